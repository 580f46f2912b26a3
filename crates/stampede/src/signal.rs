//! Waiting for the signals that end a role: Ctrl-C (SIGINT) and SIGTERM
//! (what Kubernetes and systemd send).

/// Blocks until SIGINT or SIGTERM arrives.
pub(crate) fn wait_for_shutdown() -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    })
}
