//! `musqratt-bench`: the bench scenarios as a stand-alone binary (the same arguments as
//! `musqratt bench`).

use clap::Parser;

/// Measure an MQTT broker: latency, throughput, fan-out, idle connections, relay floor.
#[derive(Debug, Parser)]
#[command(name = "musqratt-bench", version)]
struct Cli {
    #[command(flatten)]
    args: musqratt_bench::Args,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(musqratt_bench::run(cli.args))
}
