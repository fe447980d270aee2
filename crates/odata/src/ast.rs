//! Syntax tree types produced by the parsers.

/// A byte range in the decoded value of the top-level query option.
///
/// For options nested inside `$expand` the offsets are still relative to the
/// whole `$expand` value, so a span always points into one string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// The system query options of one request (or of one `$expand` item).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryOptions {
    pub filter: Option<Expr>,
    pub orderby: Option<Vec<OrderItem>>,
    pub select: Option<Vec<SelectItem>>,
    pub expand: Option<Vec<ExpandItem>>,
    pub top: Option<u64>,
    pub skip: Option<u64>,
    pub count: Option<bool>,
    pub skiptoken: Option<String>,
    /// Non-system parameters (no `$`, not a known option name), kept verbatim (decoded), in order.
    pub custom: Vec<(String, String)>,
}

/// A `$filter` expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Literal(Literal, Span),
    /// Member path, e.g. `["managedDevice","deviceName"]`; each segment an OData identifier.
    Path(Vec<String>, Span),
    Compare {
        op: CompareOp,
        left: Box<Expr>,
        right: Box<Expr>,
        span: Span,
    },
    And(Box<Expr>, Box<Expr>, Span),
    Or(Box<Expr>, Box<Expr>, Span),
    Not(Box<Expr>, Span),
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        span: Span,
    },
    Call {
        func: Function,
        args: Vec<Expr>,
        span: Span,
    },
}

impl Expr {
    /// The source range of this expression (parentheses around it are not included).
    pub fn span(&self) -> Span {
        match self {
            Expr::Literal(_, s)
            | Expr::Path(_, s)
            | Expr::And(_, _, s)
            | Expr::Or(_, _, s)
            | Expr::Not(_, s) => *s,
            Expr::Compare { span, .. } | Expr::In { span, .. } | Expr::Call { span, .. } => *span,
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The OData keyword, e.g. `"eq"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    pub(crate) fn from_keyword(word: &str) -> Option<CompareOp> {
        Some(match word {
            "eq" => CompareOp::Eq,
            "ne" => CompareOp::Ne,
            "gt" => CompareOp::Gt,
            "ge" => CompareOp::Ge,
            "lt" => CompareOp::Lt,
            "le" => CompareOp::Le,
            _ => return None,
        })
    }
}

/// Supported canonical functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    StartsWith,
    EndsWith,
    Contains,
}

impl Function {
    /// The OData function name, e.g. `"startswith"`.
    pub fn name(self) -> &'static str {
        match self {
            Function::StartsWith => "startswith",
            Function::EndsWith => "endswith",
            Function::Contains => "contains",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Function> {
        Some(match name {
            "startswith" => Function::StartsWith,
            "endswith" => Function::EndsWith,
            "contains" => Function::Contains,
            _ => return None,
        })
    }
}

/// Literal values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// Unescaped (`''` becomes `'`).
    String(String),
    Int(i64),
    /// A number with a fraction and/or exponent, kept as text, e.g. `"1.5"`, `"2e10"`.
    Decimal(String),
    /// `YYYY-MM-DD`, kept as text.
    Date(String),
    /// `YYYY-MM-DDTHH:MM[:SS[.fff]](Z|±HH:MM)`, kept as text (a space-for-`+` offset is normalised to `+`).
    DateTimeOffset(String),
    /// `microsoft.graph.runState'fail'`.
    Enum {
        type_name: String,
        member: String,
    },
    /// 8-4-4-4-12 hexadecimal digits, unquoted, kept as written.
    Guid(String),
}

/// One `$orderby` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderItem {
    pub path: Vec<String>,
    pub descending: bool,
    pub span: Span,
}

/// One `$select` item; `*` is the path `["*"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    pub path: Vec<String>,
    pub span: Span,
}

/// One `$expand` item with its nested options (`custom` is always empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandItem {
    pub path: Vec<String>,
    pub span: Span,
    pub options: QueryOptions,
}
