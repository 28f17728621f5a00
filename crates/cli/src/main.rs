//! The `berth` binary: parses the command line and dispatches to the client verbs, the
//! server, or the per-job supervisor.

mod cli;
mod cli_component;
#[cfg(feature = "kubernetes")]
mod cli_extension;
mod client;
mod commands;
mod failure;
mod output;
mod query;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command, RuntimeArgs, ServerArgs};
use failure::Failure;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server wants every core; a CLI call or a job supervisor starts faster on one thread.
    let mut builder = match cli.command {
        Command::Server(_) | Command::Router(_) => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("{f}");
            f.code
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

async fn dispatch(cli: Cli) -> Result<i32, Failure> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let home = client::home_dir(cli.home.as_deref());
    let out = output::Printer {
        format: cli.output,
        query: cli.query,
    };
    match cli.command {
        Command::Server(args) => server(home, args).await,
        Command::Model(cmd) => {
            commands::assets::model(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::Data(cmd) => {
            commands::assets::data(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::OnlineEndpoint(cmd) => {
            commands::serving::endpoint(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::OnlineDeployment(cmd) => {
            commands::serving::deployment(&client::Client::connect(&home)?, &out, cmd).await
        }
        #[cfg(feature = "kubernetes")]
        Command::Extension(cmd) => commands::extension::run(cmd, &out).await,
        Command::Router(args) => {
            init_logs();
            commands::router::run(client::Client::connect_router(&home)?, args).await
        }
        Command::Runtime(args) => runtime(args).await,
        Command::JobSupervise { dir: Some(dir), .. } => {
            Ok(berth_scheduler::supervisor::supervise(&dir).await)
        }
        Command::JobSupervise { dir: None, .. } => {
            Ok(berth_scheduler::supervisor::supervise_next().await)
        }
        Command::JobRun {
            code_from,
            env_dir,
            upload_url,
            outputs,
            command,
        } => {
            let how = commands::job_run::JobRun {
                code_from,
                env_dir,
                upload_url,
                outputs,
            };
            commands::job_run::run(how, &command).await
        }
        Command::EnvBuild { into } => match commands::job_run::build_env(&into).await {
            Ok(_) => Ok(0),
            Err(e) => Err(Failure::new(format!(
                "the environment could not be built: {e}"
            ))),
        },
        Command::Fetch {
            url,
            into,
            download,
        } => commands::fetch::run(url.as_deref(), &into, &download).await,
        Command::Job(cmd) => commands::job::run(&client::Client::connect(&home)?, &out, cmd).await,
        Command::InstanceType(cmd) => {
            commands::resources::instance_type(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::Compute(cmd) => {
            commands::resources::compute(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::Environment(cmd) => {
            commands::assets::environment(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::Component(cmd) => {
            commands::assets::component(&client::Client::connect(&home)?, &out, cmd).await
        }
        Command::Datastore(cmd) => {
            commands::resources::datastore(&client::Client::connect(&home)?, &out, cmd).await
        }
    }
}

/// Puts this replica (and its Python workers) in a sandbox out of the server's `home`: its
/// script's folder, model and environment read-only, its ready file's and socket's folders
/// read-write.
fn enter_replica_sandbox(home: &std::path::Path, args: &RuntimeArgs) -> Result<(), Failure> {
    use std::path::{Path, PathBuf};
    let parent = |p: &Path| p.parent().map(Path::to_path_buf);
    let python = Path::new(&args.python);
    // A built environment's interpreter is `<env>/bin/python`.
    let env_root = python
        .is_absolute()
        .then(|| {
            python
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
        })
        .flatten();
    let read_only: Vec<PathBuf> = args
        .script
        .as_deref()
        .and_then(parent)
        .into_iter()
        .chain(args.model_dir.clone())
        .chain(env_root)
        .collect();
    let sandbox = berth_scheduler::sandbox::Sandbox {
        protect: home.to_path_buf(),
        read_write: args
            .ready_file
            .as_deref()
            .and_then(parent)
            .into_iter()
            .chain(match &args.listen {
                berth_runtime::ListenAddr::Unix(socket) => parent(socket),
                berth_runtime::ListenAddr::Tcp(_) => None,
            })
            .collect(),
        read_only,
    };
    if berth_scheduler::sandbox::kernel_support() == berth_scheduler::sandbox::Enforcement::None {
        return Ok(());
    }
    let enforced = berth_scheduler::sandbox::enter(&sandbox)
        .map_err(|e| Failure::new(format!("cannot enter the replica's sandbox: {e}")))?;
    eprintln!(
        "{}",
        enforced.describe().replace("this job", "this replica")
    );
    Ok(())
}

/// Moves this replica into the cgroup of `procs`. Run as another user, it may not: the
/// server moves it, and it waits (up to 10 s) until it is there, before it starts any worker.
fn join_cgroup(procs: &std::path::Path) -> Result<(), Failure> {
    let failed = |e: &dyn std::fmt::Display| {
        Failure::new(format!(
            "cannot join the replica's cgroup ({}): {e}",
            procs.display()
        ))
    };
    match std::fs::write(procs, std::process::id().to_string()) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::PermissionDenied => return Err(failed(&e)),
        Err(_) => {}
    }
    let name = procs
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| format!("/{}", n.to_string_lossy()))
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        let mine = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if mine.lines().any(|l| l.ends_with(&name)) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Err(failed(&"the server did not move it there within 10 s"))
}

async fn runtime(args: RuntimeArgs) -> Result<i32, Failure> {
    if args.exit_with_parent {
        // A replica must not outlive a server killed with SIGKILL: the restarted server starts
        // fresh replicas and nothing else would stop these.
        let _ =
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM));
        if rustix::process::getppid().is_none_or(|p| p.as_raw_nonzero().get() == 1) {
            return Err(Failure::new("the server that started this replica is gone"));
        }
    }
    // Its cgroup before anything else (and before the sandbox, which keeps it out of /sys).
    for procs in &args.cgroup_procs {
        join_cgroup(procs)?;
    }
    if let Some(home) = &args.protect {
        enter_replica_sandbox(home, &args)?;
    }
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let config = berth_runtime::RuntimeConfig {
        listen: args.listen,
        script: args
            .script
            .map(std::path::absolute)
            .transpose()
            .map_err(|e| Failure::new(e.to_string()))?,
        model_dir: args
            .model_dir
            .map(std::path::absolute)
            .transpose()
            .map_err(|e| Failure::new(e.to_string()))?,
        workers,
        python: args.python,
        request_timeout: std::time::Duration::from_millis(args.request_timeout_ms),
        max_queue_wait: std::time::Duration::from_millis(args.max_queue_wait_ms),
        max_body_bytes: args.max_body_bytes,
        env: Default::default(),
        ready_file: args.ready_file,
    };
    let result = berth_runtime::run(config).await;
    result.map(|_| 0).map_err(|e| Failure {
        message: e.to_string(),
        hint: None,
        code: 3,
    })
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn server(home: std::path::PathBuf, args: ServerArgs) -> Result<i32, Failure> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(format!("cannot find the berth binary: {e}")))?;
    let env = berth_server::config::ConfigLayer::from_env(|k| std::env::var(k).ok())
        .map_err(|e| Failure::new(e.to_string()))?;
    let flags = berth_server::config::ConfigLayer {
        api_listen: args.api_listen,
        scoring_listen: args.scoring_listen,
        local_cpu: args.local_cpu,
        local_memory: args.local_memory,
        local_gpus: args.local_gpus,
        max_body_bytes: None,
        scoring_tls_cert: args.scoring_tls_cert,
        scoring_tls_key: args.scoring_tls_key,
        allow_insecure_connections: args.allow_insecure_connections.then_some(true),
        api_tls_cert: args.api_tls_cert,
        api_tls_key: args.api_tls_key,
        allow_insecure_api: args.allow_insecure_api.then_some(true),
        max_connections: args.max_connections,
        idle_timeout_seconds: args.idle_timeout_seconds,
        run_as: args.run_as,
        retain_days: args.retain_days,
        store: args.store,
        advertise_url: args.advertise_url,
        retain_days_by_experiment: retention_by_experiment(&args.retain_days_for)?,
    };
    let config = berth_server::ServerConfig::load(
        &home,
        env,
        flags,
        Some(exe.to_string_lossy().into_owned()),
    )
    .map_err(|e| Failure::new(e.to_string()))?;
    berth_server::run(config)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    Ok(0)
}

/// `--retain-days-for EXPERIMENT=DAYS` flags, as a map (`None` when there are none).
fn retention_by_experiment(
    flags: &[String],
) -> Result<Option<std::collections::BTreeMap<String, u32>>, Failure> {
    if flags.is_empty() {
        return Ok(None);
    }
    flags
        .iter()
        .map(|f| {
            f.split_once('=')
                .and_then(|(e, d)| Some((e.trim().to_string(), d.trim().parse::<u32>().ok()?)))
                .filter(|(e, _)| !e.is_empty())
                .ok_or_else(|| {
                    Failure::new(format!(
                        "--retain-days-for {f}: give an experiment and whole days, as EXPERIMENT=DAYS (nightly=7)"
                    ))
                })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}
