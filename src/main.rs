//! The `ferricorn` binary: parse the settings, pick the app, run the master.

use ferricorn::config::{self, Action};
use ferricorn::{Server, apps, logging};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("status") {
        std::process::exit(ferricorn::status::cli(&args[1..]));
    }
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
                "Error: APP '{}' looks like a Python WSGI app; rebuild with --features python",
                cfg.app
            );
            std::process::exit(1);
        }
        Action::Check(_) => {
            println!("Configuration OK");
            return;
        }
        Action::Run(cfg) => cfg,
    };
    if let Err(e) = logging::init_error_log(&cfg.loglevel, &cfg.errorlog) {
        eprintln!("Error: cannot open --error-logfile {}: {e}", cfg.errorlog);
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
        Server::with_factory(cfg, factory).run()
    };
    std::process::exit(code);
}

/// `pkg.module:callable`, `pkg.module:factory()` or `pkg.module` (dotted):
/// a Python WSGI app rather than a built-in app name.
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
        None => app.contains('.') && dotted(app),
    }
}

#[cfg(feature = "python")]
fn run_python(cfg: ferricorn::Config) -> i32 {
    match ferricorn::python::setup(&cfg) {
        Ok((factory, hooks)) => {
            let server = Server::with_factory(cfg, factory);
            match hooks {
                Some(h) => server.hooks(h).run(),
                None => server.run(),
            }
        }
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
