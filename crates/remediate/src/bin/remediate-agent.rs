//! `remediate-agent`, the device agent (its code is the `remediate-agent` library in
//! `crates/agent`; the binary lives here so the integration tests run it beside the server).

fn main() {
    std::process::exit(remediate_agent::cli::main());
}
