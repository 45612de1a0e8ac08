//! shiplog-bench: starts a real shiplog server as a separate process on port 0 with a fresh
//! database for each workload, drives it over HTTP and WebSocket from this process, and
//! prints one table (or JSON). Every response is checked: one with `errors` counts as a
//! failure, not as throughput. See BENCHMARKS.md for the method and the figures.

mod load;
mod seed;
mod server;
mod webhooks;

use std::time::Duration;

use clap::Parser;
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(name = "shiplog-bench", about)]
struct Args {
    /// Small data and short runs: a smoke test for CI (under two minutes).
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these workloads (w1..w8, sql, and w2-parts: where a W2 page's time goes),
    /// comma-separated or repeated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub run: Duration,
    pub clients: usize,
    pub w2_deployments: usize,
    pub w3_small: usize,
    pub w3_large: usize,
    pub w3_requests: usize,
    pub w4_subscribers: Vec<usize>,
    pub w4_rate: u32,
    pub w4_burst: usize,
    /// W6: the release train's two database sizes, seeded straight into the file.
    pub w6_small: usize,
    pub w6_large: usize,
    /// W7: each of its four write phases (0, N, 0, N webhooks), and the paced phase.
    pub w7_phase: Duration,
    /// W7: active webhooks (each with its own local receiver) in the phases with them.
    pub w7_webhooks: usize,
    /// W7: the longest wait, after a phase's writes, for its last deliveries.
    pub w7_tail: Duration,
    /// W7: commits per second of the paced phase.
    pub w7_rate: u32,
    /// W8: clients loading W2's page and clients creating, at the same time, for `w8_run`.
    pub w8_readers: usize,
    pub w8_writers: usize,
    pub w8_run: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Plan {
                run: Duration::from_secs(3),
                clients: 16,
                w2_deployments: 10_000,
                w3_small: 1_000,
                w3_large: 20_000,
                w3_requests: 100,
                w4_subscribers: vec![200],
                w4_rate: 5,
                w4_burst: 20,
                w6_small: 10_000,
                w6_large: 100_000,
                w7_phase: Duration::from_secs(1),
                w7_webhooks: 5,
                w7_tail: Duration::from_secs(30),
                w7_rate: 20,
                w8_readers: 8,
                w8_writers: 8,
                w8_run: Duration::from_secs(3),
            }
        } else {
            Plan {
                run: Duration::from_secs(15),
                clients: 16,
                w2_deployments: 100_000,
                w3_small: 10_000,
                w3_large: 1_000_000,
                w3_requests: 500,
                w4_subscribers: vec![1_000, 5_000],
                w4_rate: 5,
                w4_burst: 50,
                w6_small: 10_000,
                w6_large: 1_000_000,
                w7_phase: Duration::from_secs(15),
                w7_webhooks: 5,
                w7_tail: Duration::from_secs(120),
                w7_rate: 20,
                w8_readers: 8,
                w8_writers: 8,
                w8_run: Duration::from_secs(15),
            }
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Row {
    pub workload: String,
    pub throughput: Option<f64>,
    pub unit: String,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub failures: u64,
    pub note: String,
}

#[derive(Debug, Serialize)]
struct Report {
    quick: bool,
    plan: Plan,
    rows: Vec<Row>,
}

fn main() {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the tokio runtime");
    if let Err(err) = runtime.block_on(run(args)) {
        eprintln!("shiplog-bench: {err}");
        std::process::exit(1);
    }
}

pub type BenchError = Box<dyn std::error::Error + Send + Sync>;

async fn run(args: Args) -> Result<(), BenchError> {
    // Thousands of sockets: raise the open-file limit (children inherit it).
    let _ = rlimit::increase_nofile_limit(65_536);
    let plan = Plan::new(args.quick);
    let binary = server::build().await?;
    let work = tempfile::tempdir()?;
    let wants = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let mut rows = Vec::new();

    // W1 first: W5 runs its writes both in groups of W1's clients (the most the writer
    // can group) and in groups of the size the writer made of W1's writes.
    let mut w1 = None;
    if wants("w1") {
        let (row, groups) = load::w1_write(&plan, &binary, &work.path().join("w1.db")).await?;
        eprintln!("{}", row.workload);
        w1 = Some((rows.len(), row.throughput, groups));
        rows.push(row);
    }
    if wants("w5") {
        let mut sizes = vec![plan.clients];
        if let Some((_, _, Some(groups))) = w1 {
            let measured = groups.mean_group.round().max(1.0) as usize;
            if measured != plan.clients {
                sizes.push(measured);
            }
        }
        let mut limits = Vec::new();
        for (i, size) in sizes.into_iter().enumerate() {
            let db = work.path().join(format!("w5-{i}.db"));
            let row = load::w5_raw_sqlite(&plan, &db, size).await?;
            eprintln!("{}", row.workload);
            limits.push((size, row.throughput));
            rows.push(row);
        }
        if let Some((at, Some(w1), groups)) = w1 {
            let shares: Vec<String> = limits
                .iter()
                .filter_map(|(size, w5)| {
                    Some(format!("{:.0}% of W5 at G = {size}", 100.0 * w1 / (*w5)?))
                })
                .collect();
            rows[at].note = format!(
                "{}; {}",
                shares.join(", "),
                groups.map(|g| g.describe()).unwrap_or_default()
            );
        }
    }
    let w2_db = work.path().join("w2.db");
    let w2_seeded = wants("w2") || wants("sql") || wants("w8");
    if w2_seeded {
        seed::seed(&binary, &w2_db, plan.w2_deployments, true).await?;
    }
    if wants("w2") {
        let row = load::w2_dashboard(&plan, &binary, &w2_db).await?;
        eprintln!("{}", row.workload);
        rows.push(row);
    }
    if wants("sql") {
        rows.push(load::statements_per_page(&w2_db).await?);
    }
    // After W2 and sql, which read the seeded file as seeded: W8 adds deployments to it.
    if wants("w8") {
        for row in load::w8_mixed(&plan, &binary, &w2_db).await? {
            eprintln!("{}", row.workload);
            rows.push(row);
        }
    }
    if args.only.iter().any(|o| o == "w2-parts") {
        // Seeding again would add a second set of rows to the same file.
        if !w2_seeded {
            seed::seed(&binary, &w2_db, plan.w2_deployments, true).await?;
        }
        rows.extend(load::w2_breakdown(&w2_db).await?);
    }
    if wants("w3") {
        for row in load::w3_scale(&plan, &binary, work.path()).await? {
            eprintln!("{}", row.workload);
            rows.push(row);
        }
    }
    if wants("w6") {
        for row in load::w6_train(&plan, &binary, work.path()).await? {
            eprintln!("{}", row.workload);
            rows.push(row);
        }
    }
    if wants("w7") {
        for row in webhooks::w7_webhooks(&plan, &binary, work.path()).await? {
            eprintln!("{}", row.workload);
            rows.push(row);
        }
    }
    if wants("w4") {
        for &subscribers in &plan.w4_subscribers {
            let db = work.path().join(format!("w4-{subscribers}.db"));
            for row in load::w4_fanout(&plan, &binary, &db, subscribers).await? {
                eprintln!("{}", row.workload);
                rows.push(row);
            }
        }
    }

    let failures: u64 = rows.iter().map(|r| r.failures).sum();
    let report = Report {
        quick: args.quick,
        plan,
        rows,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report.rows);
    }
    if failures > 0 {
        return Err(format!("{failures} responses had errors").into());
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let fmt = |v: Option<f64>, digits: usize| match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".to_owned(),
    };
    let header = [
        "workload",
        "throughput",
        "unit",
        "p50 ms",
        "p99 ms",
        "peak MB",
        "failures",
        "note",
    ];
    println!(
        "| {:<44} | {:>12} | {:<14} | {:>8} | {:>8} | {:>9} | {:>8} | {} |",
        header[0], header[1], header[2], header[3], header[4], header[5], header[6], header[7]
    );
    println!(
        "|{}|{}|{}|{}|{}|{}|{}|---|",
        "-".repeat(46),
        "-".repeat(14),
        "-".repeat(16),
        "-".repeat(10),
        "-".repeat(10),
        "-".repeat(11),
        "-".repeat(10),
    );
    for r in rows {
        println!(
            "| {:<44} | {:>12} | {:<14} | {:>8} | {:>8} | {:>9} | {:>8} | {} |",
            r.workload,
            fmt(r.throughput, 0),
            r.unit,
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            fmt(r.peak_rss_mb, 1),
            r.failures,
            r.note
        );
    }
}

/// p-th percentile (0..=100) of latencies in microseconds, in milliseconds.
pub fn percentile(sorted_us: &[u64], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    Some(sorted_us[rank.min(sorted_us.len() - 1)] as f64 / 1000.0)
}

pub fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}
