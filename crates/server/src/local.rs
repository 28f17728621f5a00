//! The local compute as this server sees it: its capacity, and how its jobs and replicas are
//! kept apart (the `--run-as` user, cgroups, the sandbox).

use std::sync::Arc;

use berth_core::Resources;
use tracing::info;

use crate::config::ServerConfig;
use crate::{StartError, home_error};

/// What the local compute offers: this machine's, or what the configuration says; and its
/// GPUs' ids.
pub(crate) fn local_capacity(config: &ServerConfig) -> (Resources, Vec<String>) {
    let (machine, gpus) = berth_scheduler::machine::detect();
    let gpu_ids: Vec<String> = gpus
        .iter()
        .map(|g| g.uuid.clone())
        .take(config.local_gpus.map_or(usize::MAX, |n| n as usize))
        .collect();
    let capacity = Resources::new(
        config.local_cpu.unwrap_or(machine.cpu),
        config.local_memory.unwrap_or(machine.memory),
        gpu_ids.len() as u32,
    );
    info!(capacity = %capacity, "local compute");
    (capacity, gpu_ids)
}

/// How local jobs are kept apart: the user they run as (`--run-as`), their cgroups, and the
/// lines `compute show` gives (the same go to the log, once).
pub(crate) fn local_isolation(config: &ServerConfig) -> Result<LocalIsolation, StartError> {
    let home = &config.home;
    let run_as = config
        .run_as
        .as_deref()
        .map(berth_scheduler::users::resolve)
        .transpose()?;
    if let Some(who) = &run_as {
        // The job user reaches its own folder through the home (it can list nothing there).
        use std::os::unix::fs::PermissionsExt;
        for dir in [home.clone(), home.join("jobs")] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
                .map_err(home_error(home))?;
        }
        info!(user = %who.name, uid = who.uid, "local jobs run as another user");
    }
    let cgroups = berth_scheduler::cgroup::Hierarchies::detect(home);
    info!(containment = %cgroups.describe(), "local jobs");
    let sandbox = match berth_scheduler::sandbox::kernel_support() {
        berth_scheduler::sandbox::Enforcement::None => {
            tracing::warn!(
                "this kernel has no Landlock: local jobs and replicas can read the server's home (its token included)"
            );
            "no sandbox: this kernel has no Landlock; jobs can read the server's home"
        }
        _ => {
            info!("local jobs and replicas run in a Landlock sandbox, out of the server's home");
            "Landlock sandbox: jobs and replicas are kept out of the server's home"
        }
    };
    let lines: Arc<[String]> = Arc::from(vec![cgroups.describe(), sandbox.to_string()]);
    Ok(LocalIsolation {
        run_as,
        cgroups,
        lines,
    })
}

/// What [`local_isolation`] found.
pub(crate) struct LocalIsolation {
    pub(crate) run_as: Option<berth_scheduler::users::RunAs>,
    pub(crate) cgroups: berth_scheduler::cgroup::Hierarchies,
    pub(crate) lines: Arc<[String]>,
}
