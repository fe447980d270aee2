//! The grammar of rules: tokens → the syntax tree ([`Node`], [`Operand`]), checking every
//! property, operator, value type, regular expression and the nesting limit on the way.

use regex::{Regex, RegexBuilder};

use super::lexer::{lex, shorten, Tok, Token};
use super::properties::{
    logical, lookup_property, op_list, Op, Prop, PropDef, Type, FILTER_OPS, GROUP_ITEM,
    MEMBERSHIP_OPS, PHYSICAL_ID_ITEM,
};
use super::{error, Dialect, RuleSyntaxError, MAX_DEPTH};
use Op::*;

/// Compiled size limit of one `-match`/`-notMatch` regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The syntax tree of `text`, a rule of `dialect` within the length limit and not blank: the
/// whole text must be one expression, and a `device.memberOf` condition the whole rule.
pub(super) fn parse(text: &str, dialect: Dialect) -> Result<Node, RuleSyntaxError> {
    let mut parser = Parser {
        tokens: lex(text)?,
        at: 0,
        dialect,
        depth: 0,
        member_of: None,
    };
    let root = parser.parse_or()?;
    let next = parser.peek();
    match next.tok {
        Tok::End => {}
        Tok::Close => {
            return Err(error(
                next.pos,
                format!("Unexpected ')' at position {}.", next.pos),
            ))
        }
        _ => {
            let logical = match dialect {
                Dialect::Membership => "-and, -or",
                Dialect::Filter => "and, or",
            };
            return Err(error(
                next.pos,
                format!(
                    "Expected {logical} or the end of the rule at position {}, found {}.",
                    next.pos,
                    next.describe()
                ),
            ));
        }
    }
    if let Some(pos) = parser.member_of {
        if !matches!(
            root,
            Node::Quant {
                prop: Prop::MemberOf,
                ..
            }
        ) {
            return Err(error(
                pos,
                format!(
                    "device.memberOf at position {pos} cannot be combined with other expressions."
                ),
            ));
        }
    }
    Ok(root)
}

#[derive(Debug, Clone)]
pub(super) enum Node {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        prop: Prop,
        op: Op,
        operand: Operand,
    },
    /// `-any`/`-all` over a collection: each item is compared with `op` and `operand`.
    Quant {
        prop: Prop,
        all: bool,
        op: Op,
        operand: Operand,
    },
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Null,
    /// Lowercased text (booleans as "true"/"false").
    Text(String),
    /// Lowercased texts of an `-in`/`-notIn` list.
    List(Vec<String>),
    Regex(Regex),
    Version(Vec<u64>),
}

/// A value as written, before it is checked against the property and operator.
enum Literal {
    Null,
    Bool(bool),
    /// Quoted text.
    Text(String),
    /// An unquoted number or version.
    Bare(String),
    List(Vec<String>),
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
    dialect: Dialect,
    depth: usize,
    /// Position of a `device.memberOf`, which must be the whole rule.
    member_of: Option<usize>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> &Token<'a> {
        let last = self.tokens.len() - 1;
        &self.tokens[self.at.min(last)]
    }

    fn bump(&mut self) -> Token<'a> {
        let token = self.peek().clone();
        if self.at < self.tokens.len() {
            self.at += 1;
        }
        token
    }

    fn peek_logical(&self, which: &str) -> bool {
        matches!(self.peek().tok, Tok::Word(w) if logical(w) == Some(which))
    }

    fn enter(&mut self, pos: usize) -> Result<(), RuleSyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(error(
                pos,
                format!(
                    "The rule is nested too deeply at position {pos} (the maximum depth is {MAX_DEPTH})."
                ),
            ));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Node, RuleSyntaxError> {
        let mut items = vec![self.parse_and()?];
        while self.peek_logical("or") {
            self.at += 1;
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, RuleSyntaxError> {
        let mut items = vec![self.parse_unary()?];
        while self.peek_logical("and") {
            self.at += 1;
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::And(items)
        })
    }

    fn parse_unary(&mut self) -> Result<Node, RuleSyntaxError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Word(w) if logical(w) == Some("not") => {
                if self.dialect == Dialect::Filter {
                    return Err(error(
                        token.pos,
                        format!(
                            "Unsupported operator '{}' at position {}. Assignment filter rules have no negation; use -ne, -notIn or -notContains.",
                            shorten(w),
                            token.pos
                        ),
                    ));
                }
                self.enter(token.pos)?;
                self.at += 1;
                let inner = self.parse_unary()?;
                self.depth -= 1;
                Ok(Node::Not(Box::new(inner)))
            }
            Tok::Open => {
                self.enter(token.pos)?;
                self.at += 1;
                let inner = self.parse_or()?;
                self.expect_close(token.pos)?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Word(w) if logical(w).is_none() && Op::lookup(w).is_none() => {
                self.at += 1;
                self.parse_comparison(w, token.pos)
            }
            _ => Err(error(
                token.pos,
                format!(
                    "Expected a property such as {} at position {}, found {}.",
                    self.example_property(),
                    token.pos,
                    token.describe()
                ),
            )),
        }
    }

    fn example_property(&self) -> &'static str {
        match self.dialect {
            Dialect::Membership => "device.displayName",
            Dialect::Filter => "device.deviceName",
        }
    }

    fn expect_close(&mut self, open: usize) -> Result<(), RuleSyntaxError> {
        let next = self.bump();
        match next.tok {
            Tok::Close => Ok(()),
            _ => Err(error(
                next.pos,
                format!(
                    "Expected a closing parenthesis at position {} for the '(' at position {open}, found {}.",
                    next.pos,
                    next.describe()
                ),
            )),
        }
    }

    /// `device.x OP value` or `device.x -any|-all [(] item OP value [)]`; the property word is
    /// already consumed.
    fn parse_comparison(&mut self, word: &str, pos: usize) -> Result<Node, RuleSyntaxError> {
        let def = word
            .get(..7)
            .filter(|prefix| prefix.eq_ignore_ascii_case("device."))
            .and_then(|_| lookup_property(self.dialect, &word[7..]))
            .ok_or_else(|| {
                error(
                    pos,
                    format!(
                        "Unsupported property '{}' at position {pos}.",
                        shorten(word)
                    ),
                )
            })?;
        let (op, op_pos) = self.parse_operator(def, word)?;
        match def.ty {
            Type::Collection | Type::Groups => self.parse_quantified(def, op, op_pos, pos),
            _ => {
                let operand = self.parse_operand(def, op)?;
                Ok(Node::Cmp {
                    prop: def.prop,
                    op,
                    operand,
                })
            }
        }
    }

    /// The comparison operator after `subject` (a property or a `-any` item), allowed for `def`.
    fn parse_operator(
        &mut self,
        def: &PropDef,
        subject: &str,
    ) -> Result<(Op, usize), RuleSyntaxError> {
        let token = self.bump();
        let word = match token.tok {
            Tok::Word(w) if logical(w).is_none() => w,
            _ => {
                return Err(error(
                    token.pos,
                    format!(
                        "Expected an operator after '{}' at position {}, found {}.",
                        shorten(subject),
                        token.pos,
                        token.describe()
                    ),
                ))
            }
        };
        let unsupported = format!(
            "Unsupported operator '{}' at position {}.",
            shorten(word),
            token.pos
        );
        let Some(op) = Op::lookup(word) else {
            return Err(error(token.pos, unsupported));
        };
        let dialect_ops = match self.dialect {
            Dialect::Membership => MEMBERSHIP_OPS,
            Dialect::Filter => FILTER_OPS,
        };
        if !dialect_ops.contains(&op) {
            let supported = match self.dialect {
                Dialect::Membership => {
                    "Membership rules of device groups support -eq, -ne, -startsWith, -notStartsWith, -endsWith, -notEndsWith, -contains, -notContains, -in, -notIn, -match and -notMatch (and -any, -all for device.devicePhysicalIds and device.memberOf)."
                }
                Dialect::Filter => {
                    "Assignment filter rules support -eq, -ne, -startsWith, -contains, -notContains, -in and -notIn (and -gt, -ge, -lt, -le for device.operatingSystemVersion)."
                }
            };
            return Err(error(token.pos, format!("{unsupported} {supported}")));
        }
        if !def.ops.contains(&op) {
            return Err(error(
                token.pos,
                format!(
                    "The operator {} cannot be used with device.{} at position {}; use {}.",
                    op.name(),
                    def.name,
                    token.pos,
                    op_list(def.ops)
                ),
            ));
        }
        Ok((op, token.pos))
    }

    fn parse_literal(&mut self, op: Op) -> Result<(Literal, usize), RuleSyntaxError> {
        let token = self.bump();
        let expected = |token: &Token<'_>| {
            error(
                token.pos,
                format!(
                    "Expected a value after {} at position {}, found {}.",
                    op.name(),
                    token.pos,
                    token.describe()
                ),
            )
        };
        let literal = match &token.tok {
            Tok::Str(s) => Literal::Text(s.clone()),
            Tok::Num(n) => Literal::Bare((*n).to_owned()),
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "true" => Literal::Bool(true),
                "false" => Literal::Bool(false),
                "null" | "$null" => Literal::Null,
                _ => return Err(expected(&token)),
            },
            Tok::OpenList => Literal::List(self.parse_list(token.pos)?),
            _ => return Err(expected(&token)),
        };
        Ok((literal, token.pos))
    }

    /// The items of a `[...]` list whose `[` is consumed.
    fn parse_list(&mut self, open: usize) -> Result<Vec<String>, RuleSyntaxError> {
        let mut items = Vec::new();
        if matches!(self.peek().tok, Tok::CloseList) {
            self.at += 1;
            return Ok(items);
        }
        loop {
            let token = self.bump();
            match token.tok {
                Tok::Str(s) => items.push(s),
                Tok::Num(n) => items.push(n.to_owned()),
                _ => {
                    return Err(error(
                        token.pos,
                        format!(
                            "Expected a quoted string in the list at position {open}, found {} at position {}.",
                            token.describe(),
                            token.pos
                        ),
                    ))
                }
            }
            let token = self.bump();
            match token.tok {
                Tok::Comma => {}
                Tok::CloseList => return Ok(items),
                _ => {
                    return Err(error(
                        token.pos,
                        format!(
                            "Expected ',' or ']' in the list at position {open}, found {} at position {}.",
                            token.describe(),
                            token.pos
                        ),
                    ))
                }
            }
        }
    }

    /// The value after `op`, checked against the property's type and the operator.
    fn parse_operand(&mut self, def: &PropDef, op: Op) -> Result<Operand, RuleSyntaxError> {
        let (literal, pos) = self.parse_literal(op)?;
        let list_op = matches!(op, In | NotIn);
        match literal {
            Literal::List(items) if list_op => {
                Ok(Operand::List(items.iter().map(|s| s.to_lowercase()).collect()))
            }
            _ if list_op => Err(error(
                pos,
                format!(
                    "The operator {} needs a list of values, such as [\"a\", \"b\"], at position {pos}.",
                    op.name()
                ),
            )),
            Literal::List(_) => Err(error(
                pos,
                format!(
                    "The operator {} needs a single value, not a list, at position {pos}.",
                    op.name()
                ),
            )),
            Literal::Null if matches!(op, Eq | Ne) => Ok(Operand::Null),
            Literal::Null => Err(error(
                pos,
                format!(
                    "The operator {} cannot compare with null at position {pos}; only -eq and -ne can.",
                    op.name()
                ),
            )),
            Literal::Bool(b) if def.ty == Type::Bool => Ok(Operand::Text(b.to_string())),
            Literal::Text(t) | Literal::Bare(t) if def.ty == Type::Bool => {
                let lower = t.to_ascii_lowercase();
                if lower == "true" || lower == "false" {
                    Ok(Operand::Text(lower))
                } else {
                    Err(error(
                        pos,
                        format!(
                            "device.{} takes true or false, not \"{}\", at position {pos}.",
                            def.name,
                            shorten(&t)
                        ),
                    ))
                }
            }
            Literal::Bool(b) => Err(error(
                pos,
                format!(
                    "device.{} takes {}, not {b}, at position {pos}.",
                    def.name,
                    if def.ty == Type::Version {
                        "a version"
                    } else {
                        "a quoted string"
                    }
                ),
            )),
            Literal::Text(t) | Literal::Bare(t) if def.ty == Type::Version => {
                parse_version(&t).map(Operand::Version).ok_or_else(|| {
                    error(
                        pos,
                        format!(
                            "\"{}\" at position {pos} is not a version such as 10.0.22631.3235.",
                            shorten(&t)
                        ),
                    )
                })
            }
            Literal::Text(t) | Literal::Bare(t) if matches!(op, Match | NotMatch) => {
                compile_regex(&t, pos).map(Operand::Regex)
            }
            Literal::Text(t) | Literal::Bare(t) => Ok(Operand::Text(t.to_lowercase())),
        }
    }

    /// `-any`/`-all` and its condition; `op` is the quantifier.
    fn parse_quantified(
        &mut self,
        def: &'static PropDef,
        op: Op,
        op_pos: usize,
        pos: usize,
    ) -> Result<Node, RuleSyntaxError> {
        let (item_def, item_name) = match def.ty {
            Type::Groups => {
                if self.member_of.is_none() {
                    self.member_of = Some(pos);
                }
                (&GROUP_ITEM, "group.objectId")
            }
            _ => (&PHYSICAL_ID_ITEM, "_"),
        };
        self.enter(op_pos)?;
        let open = match self.peek().tok {
            Tok::Open => {
                let open = self.peek().pos;
                self.at += 1;
                Some(open)
            }
            _ => None,
        };
        let token = self.bump();
        match token.tok {
            Tok::Word(w) if w.eq_ignore_ascii_case(item_name) => {}
            _ => {
                return Err(error(
                    token.pos,
                    format!(
                        "Expected {item_name} after {} at position {}, found {}.",
                        op.name(),
                        token.pos,
                        token.describe()
                    ),
                ))
            }
        }
        let (item_op, _) = self.parse_operator(item_def, item_name)?;
        let operand = self.parse_operand(item_def, item_op)?;
        if let Some(open) = open {
            self.expect_close(open)?;
        }
        self.depth -= 1;
        Ok(Node::Quant {
            prop: def.prop,
            all: op == All,
            op: item_op,
            operand,
        })
    }
}

fn compile_regex(pattern: &str, pos: usize) -> Result<Regex, RuleSyntaxError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .nest_limit(MAX_DEPTH as u32)
        .build()
        .map_err(|e| {
            let detail = match &e {
                regex::Error::CompiledTooBig(_) => "it is too large".to_owned(),
                _ => {
                    let text = e.to_string();
                    // The syntax error's last line is "error: what is wrong".
                    text.lines()
                        .rev()
                        .find_map(|l| l.trim().strip_prefix("error: "))
                        .unwrap_or(text.lines().next().unwrap_or("invalid"))
                        .to_owned()
                }
            };
            error(
                pos,
                format!("The regular expression at position {pos} is invalid: {detail}."),
            )
        })
}

/// Dotted decimal numbers (`10.0.22631.3235`, `14`), each at most 20 digits.
pub(super) fn parse_version(text: &str) -> Option<Vec<u64>> {
    text.trim()
        .split('.')
        .map(|part| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                part.parse().ok()
            }
        })
        .collect()
}
