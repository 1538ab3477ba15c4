//! Source-neutral setting values and where they came from.
//!
//! Every front end (the command line, `GUNICORN_CMD_ARGS`/`FERRICORN_CMD_ARGS`,
//! a TOML file, a gunicorn.conf.py run by the embedded interpreter) turns what
//! it read into `(name, Value)` pairs tagged with an [`Origin`]; one path in
//! [`crate::config`] validates and stores them through the settings table. So a
//! Python file and a TOML file are checked by the same setters, give the same
//! errors, and `--print-config` can say where each value came from.

use std::fmt;
use std::path::PathBuf;

/// A setting's value as a source wrote it, before the setting's own parser
/// sees it. Strings from the command line are `Str`; typed files keep their
/// types so a wrong type is reported as such ("expected an integer, got a list").
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python's `None`: an optional setting left unset.
    None,
    Str(String),
    Int(i64),
    Bool(bool),
    Float(f64),
    List(Vec<Value>),
    /// A dict with string keys (gunicorn's `secure_scheme_headers`, `raw_env` as a dict).
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The type's name in errors ("got a list").
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Str(_) => "string",
            Value::Int(_) => "integer",
            Value::Bool(_) => "boolean",
            Value::Float(_) => "float",
            Value::List(_) => "array",
            Value::Map(_) => "table",
        }
    }

    /// The string a setter parses, for a scalar; `None` for a list or a map.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::None => Some(String::new()),
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::List(_) | Value::Map(_) => None,
        }
    }
}

impl Value {
    /// JSON text, for settings that take a structure as JSON (metavar `JSON`,
    /// e.g. gunicorn's `logconfig_dict` given as a dict in a Python file).
    pub fn to_json(&self) -> String {
        fn string(s: &str, out: &mut String) {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        fn write(v: &Value, out: &mut String) {
            match v {
                Value::None => out.push_str("null"),
                Value::Str(s) => string(s, out),
                Value::Int(i) => out.push_str(&i.to_string()),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                Value::Float(f) if f.is_finite() => out.push_str(&format!("{f:?}")),
                Value::Float(_) => out.push_str("null"),
                Value::List(items) => {
                    out.push('[');
                    for (i, item) in items.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        write(item, out);
                    }
                    out.push(']');
                }
                Value::Map(pairs) => {
                    out.push('{');
                    for (i, (k, item)) in pairs.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        string(k, out);
                        out.push_str(": ");
                        write(item, out);
                    }
                    out.push('}');
                }
            }
        }
        let mut out = String::new();
        write(self, &mut out);
        out
    }
}

/// Where a setting's value came from, lowest precedence first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A default taken from the environment (`PORT`, `WEB_CONCURRENCY`).
    EnvDefault(&'static str),
    /// A config file (TOML or Python).
    File(PathBuf),
    /// An argument list in an environment variable (`GUNICORN_CMD_ARGS`, `FERRICORN_CMD_ARGS`).
    CmdArgsEnv(&'static str),
    /// The command line.
    CommandLine,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::EnvDefault(var) => write!(f, "environment variable {var}"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::CmdArgsEnv(var) => write!(f, "{var}"),
            Origin::CommandLine => write!(f, "command line"),
        }
    }
}

/// POSIX shell-like splitting of an argument list held in an environment
/// variable, as gunicorn does with `shlex.split(GUNICORN_CMD_ARGS)`: words are
/// separated by blanks, single quotes keep everything, double quotes keep all
/// but `\"`, `\\`, `\$` and `` \` ``, a backslash outside quotes escapes the next
/// character.
pub fn shell_split(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next() {
                        Some('"') => break,
                        Some('\\') => match it.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated double quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match it.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing backslash".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        shell_split(s).unwrap()
    }

    #[test]
    fn shell_split_as_shlex() {
        assert_eq!(split("  -w 3   --bind=:80 "), ["-w", "3", "--bind=:80"]);
        assert_eq!(
            split(r#"--access-logformat '%(h)s "%(r)s"' -n "my app""#),
            ["--access-logformat", r#"%(h)s "%(r)s""#, "-n", "my app"]
        );
        assert_eq!(split(r#"a\ b "c\"d" "e\f""#), ["a b", "c\"d", "e\\f"]);
        assert_eq!(split("''"), [""]);
        assert!(split("").is_empty());
        assert!(shell_split("'open").is_err());
        assert!(shell_split("\"open").is_err());
        assert!(shell_split("end\\").is_err());
    }

    #[test]
    fn structures_as_json() {
        let v = Value::Map(vec![
            ("version".into(), Value::Int(1)),
            (
                "handlers".into(),
                Value::Map(vec![(
                    "h".into(),
                    Value::List(vec![
                        Value::Str("a\"b\\c\n".into()),
                        Value::Bool(false),
                        Value::None,
                        Value::Float(0.5),
                    ]),
                )]),
            ),
        ]);
        assert_eq!(
            v.to_json(),
            r#"{"version": 1, "handlers": {"h": ["a\"b\\c\n", false, null, 0.5]}}"#
        );
    }

    #[test]
    fn scalars_as_setters_read_them() {
        assert_eq!(Value::Int(4).scalar_text().as_deref(), Some("4"));
        assert_eq!(Value::Bool(true).scalar_text().as_deref(), Some("true"));
        assert_eq!(Value::None.scalar_text().as_deref(), Some(""));
        assert_eq!(Value::List(vec![]).scalar_text(), None);
        assert_eq!(
            Origin::File("/x/gunicorn.conf.py".into()).to_string(),
            "/x/gunicorn.conf.py"
        );
        assert!(Origin::CommandLine > Origin::CmdArgsEnv("GUNICORN_CMD_ARGS"));
    }
}
