//! Fixtures the scheduler's unit tests share.

use berth_core::job::{JobRecord, JobState};
use berth_core::spec::instance_type::InstanceType;
use berth_core::spec::job::JobSpec;
use berth_core::yaml::Source;
use time::OffsetDateTime;

/// A queued local job `name` from the job file `yaml`, its folder at `workdir`, on the default
/// instance type; tests change what they need.
pub(crate) fn job_record(name: &str, yaml: &str, workdir: &str) -> JobRecord {
    let spec = JobSpec::parse(&Source::new("job.yml", yaml)).expect("a valid job file");
    JobRecord {
        name: name.into(),
        display_name: name.into(),
        experiment_name: "exp".into(),
        compute: "local".into(),
        instance_type: InstanceType::default_type(),
        base_dir: "/nowhere".into(),
        workdir: workdir.into(),
        inputs: Default::default(),
        outputs: Default::default(),
        created_at: OffsetDateTime::now_utc(),
        state: JobState::Queued,
        upload_token: None,
        environment: None,
        tracking: None,
        parent_job_name: None,
        sweep: None,
        pipeline: None,
        archived: false,
        pruned: false,
        cancel_requested: false,
        spec,
    }
}
