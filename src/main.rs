//! The `ferricorn` binary: parse the settings, pick the app, run the master.

use ferricorn::config::{self, Action};
use ferricorn::{Server, apps, logging};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let action = match config::parse(&args, &|k| std::env::var(k).ok()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
    };
    let cfg = match action {
        Action::Print(text) => {
            print!("{text}");
            return;
        }
        Action::Check(cfg) | Action::Run(cfg)
            if !apps::BUILTIN.contains(&cfg.app.as_str()) && !looks_like_python(&cfg.app) =>
        {
            eprintln!(
                "Error: unknown app '{}' (built-in apps: {})",
                cfg.app,
                apps::BUILTIN.join(", ")
            );
            std::process::exit(1);
        }
        Action::Check(cfg) | Action::Run(cfg)
            if looks_like_python(&cfg.app) && !cfg!(feature = "python") =>
        {
            eprintln!(
                "Error: APP '{}' is not a built-in app ({}) and this ferricorn was built \
                 without Python support for WSGI apps (rebuild with --features python)",
                cfg.app,
                apps::BUILTIN.join(", ")
            );
            std::process::exit(1);
        }
        Action::Check(cfg) => {
            // As gunicorn's --check-config: the app must import too (exit 4 if not).
            if let Err(e) = check_app(&cfg) {
                eprintln!("Error: {e}");
                std::process::exit(4);
            }
            println!("Configuration OK");
            return;
        }
        Action::Run(cfg) => cfg,
    };
    if let Err(e) = logging::init_error_log(&cfg.loglevel, &cfg.errorlog) {
        eprintln!("Error: cannot open --error-logfile {}: {e}", cfg.errorlog);
        std::process::exit(1);
    }
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    // -e/--env: the app and the workers see these (gunicorn sets them in the master).
    if let Err(e) = config::apply_raw_env(&cfg.raw_env) {
        log::error!("{e}");
        std::process::exit(1);
    }
    if let Some(dir) = &cfg.chdir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        eprintln!("Error: invalid value for --chdir: {}: {e}", dir.display());
        std::process::exit(1);
    }
    let code = if looks_like_python(&cfg.app) {
        run_python(cfg)
    } else {
        let app = cfg.app.clone();
        let factory = Box::new(move |ctx: &ferricorn::WorkerContext| apps::builtin(&app, ctx));
        with_python_hooks(&cfg.clone(), Server::with_factory(cfg, factory)).run()
    };
    std::process::exit(code);
}

/// `pkg.module:callable`, `pkg.module:factory()`, `pkg.module` (dotted) or a
/// bare module name other than a built-in app's (`pkg.module` means
/// `pkg.module:application`): a Python WSGI app rather than a built-in app.
fn looks_like_python(app: &str) -> bool {
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
fn run_python(cfg: ferricorn::Config) -> i32 {
    match ferricorn::python::setup(&cfg) {
        Ok(factory) => with_python_hooks(&cfg.clone(), Server::with_factory(cfg, factory)).run(),
        Err(e) => {
            log::error!("{e}");
            1
        }
    }
}

#[cfg(not(feature = "python"))]
fn run_python(_cfg: ferricorn::Config) -> i32 {
    unreachable!("rejected while parsing the command line")
}

/// The interpreter's fork bracket (a no-op while the master has no
/// interpreter) and the hooks of a Python config file (none without one).
#[cfg(feature = "python")]
fn with_python_hooks(cfg: &ferricorn::Config, server: Server) -> Server {
    ferricorn::python::hooks::set_proc_name(cfg.proc_name.clone());
    server
        .fork_bracket(ferricorn::python::ForkBracket)
        .hooks(ferricorn::python::hooks::PyHooks)
}

#[cfg(not(feature = "python"))]
fn with_python_hooks(_cfg: &ferricorn::Config, server: Server) -> Server {
    server
}

/// `--check-config` imports a Python app as a worker would.
#[cfg(feature = "python")]
fn check_app(cfg: &ferricorn::Config) -> Result<(), String> {
    if looks_like_python(&cfg.app) {
        ferricorn::python::check_app(cfg)
    } else {
        Ok(())
    }
}

#[cfg(not(feature = "python"))]
fn check_app(_cfg: &ferricorn::Config) -> Result<(), String> {
    Ok(())
}
