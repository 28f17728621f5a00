//! The tracking tables: experiments, runs with a job's status, params that cannot change,
//! metric histories with NaN, the latest value of a metric; on SQLite and on PostgreSQL.

mod support;

use berth_store::tracking::{Metric, NewRun, TrackingError};

fn run(id: &str, experiment_id: i64, job: Option<&str>) -> NewRun {
    NewRun {
        run_id: id.into(),
        experiment_id,
        run_name: id.into(),
        user_id: "me".into(),
        job_name: job.map(str::to_string),
        status: "RUNNING".into(),
        start_time: 1,
        artifact_uri: format!("mlflow-artifacts:/{experiment_id}/{id}/artifacts"),
        tags: vec![("mlflow.runName".into(), id.into())],
    }
}

fn point(key: &str, value: f64, step: i64) -> Metric {
    Metric {
        key: key.into(),
        value,
        timestamp: 1000 + step,
        step,
    }
}

#[tokio::test]
async fn an_experiment_is_made_once_and_found_by_name() -> Result<(), TrackingError> {
    let both = support::both().await;
    for (db, s) in &both.stores {
        eprintln!("on {db}");
        let id = s.ensure_experiment("iris", 5).await?;
        assert_eq!(s.ensure_experiment("iris", 6).await?, id);
        let e = s.experiment_by_name("iris").await?.expect("stored");
        assert_eq!(e.artifact_location, format!("mlflow-artifacts:/{id}"));
        assert!(matches!(
            s.create_experiment("iris", None, &[], 7).await,
            Err(TrackingError::AlreadyExists(_))
        ));
        assert_eq!(s.experiment(0).await?.expect("Default").name, "Default");
    }
    Ok(())
}

#[tokio::test]
async fn a_param_cannot_change_and_the_batch_is_all_or_nothing() -> Result<(), TrackingError> {
    let both = support::both().await;
    for (db, s) in &both.stores {
        eprintln!("on {db}");
        s.create_run(&run("r1", 0, None)).await?;
        s.log_batch("r1", &[], &[("alpha".into(), "0.5".into())], &[])
            .await?;
        // The same value again is fine.
        s.log_batch("r1", &[], &[("alpha".into(), "0.5".into())], &[])
            .await?;
        let refused = s
            .log_batch(
                "r1",
                &[point("loss", 1.0, 0)],
                &[("alpha".into(), "0.7".into())],
                &[],
            )
            .await;
        assert!(matches!(refused, Err(TrackingError::Invalid(m)) if m.contains("alpha")));
        let r = s.run("r1").await?.expect("stored");
        assert_eq!(r.params["alpha"], "0.5");
        assert!(r.metrics.is_empty(), "nothing of a refused batch is kept");
    }
    Ok(())
}

#[tokio::test]
async fn a_history_keeps_every_point_in_order_and_the_latest_is_by_step()
-> Result<(), TrackingError> {
    let both = support::both().await;
    for (db, s) in &both.stores {
        eprintln!("on {db}");
        s.create_run(&run("r1", 0, None)).await?;
        let points = [
            point("loss", 3.0, 0),
            point("loss", 1.0, 2),
            point("loss", f64::NAN, 1),
        ];
        s.log_batch("r1", &points, &[], &[]).await?;
        let h = s.metric_history("r1", "loss", 0, 100).await?;
        assert_eq!(h.iter().map(|m| m.step).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!(h[2].value.is_nan());
        let latest = &s.run("r1").await?.expect("stored").metrics[0];
        assert_eq!((latest.step, latest.value), (2, 1.0));
        assert_eq!(s.metric_history("r1", "loss", 1, 1).await?.len(), 1);
        assert!(!s.has_metric("r1", "acc").await?);
    }
    Ok(())
}

#[tokio::test]
async fn a_jobs_run_carries_the_jobs_status() -> Result<(), TrackingError> {
    let both = support::both().await;
    for (db, s) in &both.stores {
        eprintln!("on {db}");
        s.insert(
            berth_store::Kind::Job,
            "j1",
            Some("Running"),
            &serde_json::json!({}),
        )
        .await?;
        s.create_run(&run("j1", 0, Some("j1"))).await?;
        s.create_run(&run("other", 0, None)).await?;
        let info = s.run_info("j1").await?.expect("stored");
        assert_eq!(info.job_status.as_deref(), Some("Running"));
        let mine = s.run_infos(&[0], &["active"], Some("j1")).await?;
        assert_eq!(mine.len(), 1);
        assert_eq!(s.run_infos(&[0], &["active"], None).await?.len(), 2);
    }
    Ok(())
}
