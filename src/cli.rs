//! The `ferricorn` command: parse the settings, pick the app, run the
//! master. Both front ends call [`main`]: the binary (src/main.rs) and the
//! pip package's extension module (pyext/, inside a running interpreter).

use std::io::Write;

use crate::config::{self, Action};
use crate::{Server, apps, logging};

/// ferricorn's version (`--version`, the pip package's `__version__`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Run the command with `args` (without `argv[0]`) and return its exit
/// code: 0, 1 for a bad setting, gunicorn's 3 and 4 when workers cannot
/// boot or the app cannot load.
pub fn main(args: &[String]) -> i32 {
    let code = run(args);
    // The extension module returns to Python instead of exiting the process,
    // so what --help or --print-config wrote must not stay in Rust's buffer.
    let _ = std::io::stdout().flush();
    code
}

fn run(args: &[String]) -> i32 {
    if args.first().map(String::as_str) == Some("status") {
        return crate::status::cli(&args[1..]);
    }
    let action = match config::parse(args, &|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error: {e}");
            return 1;
        }
    };
    let cfg = match action {
        Action::Print(text) => {
            print!("{text}");
            return 0;
        }
        Action::Check(cfg) | Action::Run(cfg)
            if !apps::BUILTIN.contains(&cfg.app.as_str()) && !looks_like_python(&cfg.app) =>
        {
            eprintln!(
                "Error: unknown app '{}' (built-in apps: {})",
                cfg.app,
                apps::BUILTIN.join(", ")
            );
            return 1;
        }
        Action::Check(cfg) | Action::Run(cfg)
            if looks_like_python(&cfg.app) && !cfg!(feature = "python") =>
        {
            eprintln!(
                "Error: APP '{}' is not a built-in app ({}) and this ferricorn has no Python \
                 support for WSGI apps; install ferricorn into the app's virtualenv with pip \
                 (see the README), or rebuild with --features python",
                cfg.app,
                apps::BUILTIN.join(", ")
            );
            return 1;
        }
        Action::Check(cfg) => {
            // As gunicorn's --check-config: the app must import too (exit 4 if not).
            if let Err(e) = check_app(&cfg) {
                eprintln!("Error: {e}");
                return crate::worker::WorkerExit::AppLoadError.code();
            }
            println!("Configuration OK");
            return 0;
        }
        Action::Run(cfg) => cfg,
    };
    if let Err(e) = logging::init(&cfg) {
        eprintln!("Error: {e}");
        return 1;
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    // -e/--env: the app and the workers see these (gunicorn sets them in the master).
    if let Err(e) = config::apply_raw_env(&cfg.raw_env) {
        log::error!("{e}");
        return 1;
    }
    if let Some(dir) = &cfg.chdir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        eprintln!("Error: invalid value for --chdir: {}: {e}", dir.display());
        return 1;
    }
    if looks_like_python(&cfg.app) {
        run_python(cfg)
    } else {
        let app = cfg.app.clone();
        let factory = Box::new(move |ctx: &crate::WorkerContext| apps::builtin(&app, ctx));
        with_python_hooks(&cfg.clone(), Server::with_factory(cfg, factory)).run()
    }
}

/// `pkg.module:callable`, `pkg.module:factory()`, `pkg.module` (dotted) or a
/// bare module name other than a built-in app's (`pkg.module` means
/// `pkg.module:application`): a Python WSGI app rather than a built-in app.
pub fn looks_like_python(app: &str) -> bool {
    let ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let dotted = |s: &str| s.split('.').all(ident);
    match app.split_once(':') {
        Some((module, attr)) => dotted(module) && dotted(attr.strip_suffix("()").unwrap_or(attr)),
        None => dotted(app) && !apps::BUILTIN.contains(&app),
    }
}

#[cfg(feature = "python")]
fn run_python(cfg: crate::Config) -> i32 {
    match crate::python::setup(&cfg) {
        Ok(factory) => with_python_hooks(&cfg.clone(), Server::with_factory(cfg, factory)).run(),
        Err(crate::python::SetupError::Config(e)) => {
            log::error!("{e}");
            1
        }
        // gunicorn's code for an app that cannot be imported (--preload).
        Err(crate::python::SetupError::AppLoad(e)) => {
            log::error!("{e}");
            crate::worker::WorkerExit::AppLoadError.code()
        }
    }
}

#[cfg(not(feature = "python"))]
fn run_python(_cfg: crate::Config) -> i32 {
    unreachable!("rejected while parsing the command line")
}

/// The interpreter's fork bracket (a no-op while the master has no
/// interpreter) and the hooks of a Python config file (none without one).
#[cfg(feature = "python")]
fn with_python_hooks(cfg: &crate::Config, server: Server) -> Server {
    crate::python::hooks::set_proc_name(cfg.proc_name.clone());
    server
        .fork_bracket(crate::python::ForkBracket)
        .hooks(crate::python::hooks::PyHooks)
}

#[cfg(not(feature = "python"))]
fn with_python_hooks(_cfg: &crate::Config, server: Server) -> Server {
    server
}

/// `--check-config` imports a Python app as a worker would.
#[cfg(feature = "python")]
fn check_app(cfg: &crate::Config) -> Result<(), String> {
    if looks_like_python(&cfg.app) {
        crate::python::check_app(cfg)
    } else {
        Ok(())
    }
}

#[cfg(not(feature = "python"))]
fn check_app(_cfg: &crate::Config) -> Result<(), String> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::looks_like_python;

    #[test]
    fn python_specs_are_told_from_builtin_names() {
        for spec in [
            "app.wsgi",
            "app.wsgi:application",
            "m:create()",
            "a.b:c.d",
            "app",
        ] {
            assert!(looks_like_python(spec), "{spec}");
        }
        for name in ["welcome", "hello", "echo", "app.", "a b:c", ":app", "m:"] {
            assert!(!looks_like_python(name), "{name}");
        }
    }
}
