//! `mockllm --listen 127.0.0.1:9090 [--latency-ms N] [--chunks N] [--chunk-delay-ms N] [--api-key K]`

use std::time::Duration;

fn main() -> std::io::Result<()> {
    let mut listen = "127.0.0.1:9090".to_owned();
    let mut cfg = mockllm::MockConfig {
        chunks: 8,
        ..Default::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_default();
        match a.as_str() {
            "--listen" => listen = val(),
            "--latency-ms" => cfg.latency = Duration::from_millis(val().parse().unwrap_or(0)),
            "--chunks" => cfg.chunks = val().parse().unwrap_or(8),
            "--chunk-delay-ms" => {
                cfg.chunk_delay = Duration::from_millis(val().parse().unwrap_or(0))
            }
            "--api-key" => cfg.api_key = Some(val()),
            other => {
                eprintln!("mockllm: unknown argument {other:?}");
                std::process::exit(2);
            }
        }
    }
    let addr = listen.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--listen: {e}"))
    })?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let h = mockllm::start(addr, cfg).await?;
            println!("mockllm listening on http://{}", h.addr);
            let _ = tokio::signal::ctrl_c().await;
            h.stop().await;
            Ok(())
        })
}
