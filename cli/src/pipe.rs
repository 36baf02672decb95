//! A closed stdout is not an error: `tessera status | head -1` must exit quietly.
//!
//! Rust ignores SIGPIPE, so a write to a pipe whose reader is gone returns `EPIPE`, and
//! `println!` panics on it. Resetting SIGPIPE would need `unsafe`; instead a panic hook
//! recognises the print failure and exits at once with the status a shell expects from a
//! process killed by SIGPIPE (141), without a panic message. Any other panic goes to the
//! default hook.

/// Installs the hook; call first thing in `main`.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.contains("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
