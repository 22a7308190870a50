//! The one small runtime for what ords-guard does on its own, off the proxy's threads:
//! identity providers' key fetches and egress token requests. One thread: a few small
//! requests every few minutes. Started with the first task that needs it.

use std::sync::OnceLock;

/// A handle to the background runtime, started on first use.
pub fn handle() -> Result<tokio::runtime::Handle, String> {
    static RT: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
    RT.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the background runtime: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("background".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start the background thread: {e}"))?;
        Ok(handle)
    })
    .clone()
}
