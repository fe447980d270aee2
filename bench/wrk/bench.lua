-- wrk script for bench/run.sh. Configured by environment variables:
--   BENCH_METHOD   GET | POST | PATCH
--   BENCH_PATH     request path (GET/POST), or the collection path that PATCH appends "/<id>" to
--   BENCH_TOKEN    bearer token (optional)
--   BENCH_BODY     file with the request body; "{{N7}}" is replaced by a 7-digit per-request counter,
--                  "{{T}}" by the wrk thread number (0-9), "{{DEV}}" by the next id of BENCH_IDS
--   BENCH_IDS      file with one id per line (POST: device ids to bind; PATCH: run-state ids)
--   BENCH_OFFSET   first line of BENCH_IDS to use (ids are split between threads: thread t of T uses
--                  lines OFFSET+t, OFFSET+t+T, ...), so every POST binds a device no earlier POST used
--   BENCH_THREADS  the -t given to wrk (thread states cannot see each other)
-- done() prints one line "WRKJSON {...}" with counts and latency percentiles (microseconds).
local threads = {}
counter = 0        -- global: per thread state, read by done() through thread:get
tid = tid or 0     -- global: set by setup() through thread:set
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local ids = nil
local body_template = nil
local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

local function read_file(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- writes: count answers by status (GET pages are not handed to Lua: that would cost more than they do)
statuses = {}
if method ~= "GET" then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
  end
end

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  local b = os.getenv("BENCH_BODY")
  if b and b ~= "" then body_template = read_file(b) end
  local f = os.getenv("BENCH_IDS")
  if f and f ~= "" then
    ids = {}
    for line in io.lines(f) do
      if line ~= "" then table.insert(ids, line) end
    end
  end
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end

local function next_id()
  -- thread tid uses lines offset+tid, offset+tid+nthreads, ... (1-based in Lua)
  local i = offset + tid + counter * nthreads
  return ids[(i % #ids) + 1]
end

function request()
  local p = path
  local body = nil
  local id = nil
  if ids then id = next_id() end
  if method == "PATCH" then p = path .. "/" .. id end
  if body_template then
    local n = string.format("%07d", counter % 10000000)
    body = body_template:gsub("{{N7}}", n):gsub("{{T}}", tostring(tid % 10))
    if id then body = body:gsub("{{DEV}}", id) end
  end
  counter = counter + 1
  return wrk.format(method, p, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local max_counter = 0
  local all = {}
  for _, t in ipairs(threads) do
    local c = t:get("counter") or 0
    if c > max_counter then max_counter = c end
    for k, v in pairs(t:get("statuses") or {}) do all[k] = (all[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(all) do table.insert(parts, string.format('"%d":%d', k, v)) end
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"lat_mean_us":%.1f,"lat_p50_us":%d,' ..
    '"lat_p90_us":%d,"lat_p99_us":%d,"lat_max_us":%d,"max_thread_requests":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, max_counter, table.concat(parts, ",")))
end
