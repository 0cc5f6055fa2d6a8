//! Panics inside dependencies (a decoder, a file parser, a runtime) turned into errors.
//!
//! [`contained`] runs a closure and returns what it panicked with as an `Err`, without the
//! default hook's "thread panicked at" message on stderr: the caller reports the failure in
//! its own words (the file and what failed), with where the panic happened so that the
//! message is worth a bug report. Panics outside [`contained`] print as before.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DEPTH.with(Cell::get) == 0 {
                previous(info);
            } else if let Some(l) = info.location() {
                let at = format!("{}:{}", l.file(), l.line());
                LOCATION.with(|c| *c.borrow_mut() = Some(at));
            }
        }));
    });
}

/// Runs `f`; a panic inside it becomes `Err("message at file:line")`.
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        match LOCATION.with(|c| c.borrow_mut().take()) {
            Some(at) => format!("{msg} at {at}"),
            None => msg,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::contained;

    #[test]
    fn a_panic_becomes_its_message_and_values_pass_through() {
        assert_eq!(contained(|| 7), Ok(7));
        let v: Vec<u8> = Vec::new();
        let e = contained(|| v[3]).unwrap_err();
        assert!(e.contains("index out of bounds"), "{e}");
        let e = contained(|| -> u8 { panic!("bad {}", 1) }).unwrap_err();
        assert!(e.starts_with("bad 1 at src/panics.rs:"), "{e}");
        // nested: the inner panic is contained, the outer call still succeeds
        assert_eq!(contained(|| contained(|| panic!("x")).is_err()), Ok(true));
    }
}
