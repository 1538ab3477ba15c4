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
        Action::Check(cfg) | Action::Run(cfg) if !apps::BUILTIN.contains(&cfg.app.as_str()) => {
            eprintln!(
                "Error: unknown app '{}' (built-in apps: {})",
                cfg.app,
                apps::BUILTIN.join(", ")
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
    if let Some(dir) = &cfg.chdir {
        if let Err(e) = std::env::set_current_dir(dir) {
            eprintln!("Error: invalid value for --chdir: {}: {e}", dir.display());
            std::process::exit(1);
        }
    }
    let app = cfg.app.clone();
    let factory = Box::new(move |ctx: &ferricorn::WorkerContext| apps::builtin(&app, ctx));
    let code = Server::with_factory(cfg, factory).run();
    std::process::exit(code);
}
