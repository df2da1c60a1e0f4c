//! The `strata` command.

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        if is_broken_pipe(&e) {
            // The reader went away (`strata images | head -1`): stop
            // quietly, with the status a SIGPIPE death would give.
            std::process::exit(128 + libc::SIGPIPE);
        }
        eprintln!("strata: error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// Whether the error comes from writing to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The error and its causes joined by `: `, leaving out a cause whose text
/// the message before it already contains (typed errors name their OS error
/// in their own message and also chain it).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::from_raw_os_error(libc::EPERM);
        let typed = strata::StoreError::io("mknod", "/x", io);
        let e = anyhow::Error::new(typed).context("loading a.tar");
        assert_eq!(
            super::error_chain(&e),
            "loading a.tar: mknod /x: Operation not permitted (os error 1)"
        );
    }
}
