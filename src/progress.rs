//! Watching a long computation and stopping it.
//!
//! A caller runs a fit (or a λ path, a sweep, a gradient check) inside [`watch`]; the library
//! reports to the watcher after each outer iteration, each λ of a path and each epoch of a
//! solve. A watcher that answers [`ControlFlow::Break`] stops the computation, which then
//! returns [`Error::Interrupted`]: how a notebook's Ctrl-C ends a fit within a second, and how
//! a progress bar is drawn. Without a watcher a report costs a thread-local read.
//!
//! ```
//! use metaadd::data::synthetic::{RegressionNoise, RegressionProtocol};
//! use metaadd::progress::{watch, Progress};
//! use metaadd::{Error, FitParams, Task};
//! use std::ops::ControlFlow;
//!
//! let splits = RegressionProtocol::new(RegressionNoise::B).n(100).n_features(8).generate(1)?;
//! let (train, meta) = (&splits.train, &splits.meta);
//! let params = FitParams::new(Task::Regression).k(1).iterations(50);
//! // Stop after ten outer iterations.
//! let outcome = watch(
//!     |p| match p {
//!         Progress::Iteration { done: 10, .. } => ControlFlow::Break(()),
//!         _ => ControlFlow::Continue(()),
//!     },
//!     || params.fit(train, meta),
//! );
//! assert!(matches!(outcome, Err(Error::Interrupted)));
//! # Ok::<(), metaadd::Error>(())
//! ```

use crate::error::{Error, Result};
use std::cell::RefCell;
use std::ops::ControlFlow;

/// What a long computation has done so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// An outer iteration of a fit finished; `total` is the fit's number of iterations (of
    /// one λ, for a path).
    Iteration {
        /// Iterations finished.
        done: usize,
        /// Outer iterations of this fit.
        total: usize,
        /// The meta loss of the last iteration.
        meta_loss: f64,
        /// Non-zero coefficient groups after it.
        active_groups: usize,
    },
    /// `done` of `total` steps of a λ path (its final fit counted as one) or of a sweep.
    Step {
        /// Steps finished.
        done: usize,
        /// Steps in all.
        total: usize,
    },
    /// An epoch of a solve of the inner problem (`epochs` so far in this phase).
    Solver {
        /// Epochs so far.
        epochs: usize,
    },
}

/// A watcher: sees each report and answers whether the computation goes on.
type Watcher = Box<dyn FnMut(Progress) -> ControlFlow<()>>;

thread_local! {
    static WATCHER: RefCell<Option<Watcher>> = const { RefCell::new(None) };
}

/// Runs `f` with `watcher` seeing the progress this thread reports; a watcher already set
/// (an outer `watch`) is restored afterwards. A computation the watcher stops returns
/// [`Error::Interrupted`] from `f`.
pub fn watch<R>(
    watcher: impl FnMut(Progress) -> ControlFlow<()> + 'static,
    f: impl FnOnce() -> R,
) -> R {
    let previous = WATCHER.with(|w| w.borrow_mut().replace(Box::new(watcher)));
    // Restored on the way out, also when `f` panics.
    struct Restore(Option<Option<Watcher>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                WATCHER.with(|w| *w.borrow_mut() = previous);
            }
        }
    }
    let _restore = Restore(Some(previous));
    f()
}

/// Reports `progress` to this thread's watcher: `Err(Error::Interrupted)` when it says stop.
pub fn report(progress: Progress) -> Result<()> {
    // Taken out while it runs, so that a watcher that itself reports does not re-enter.
    let Some(mut watcher) = WATCHER.with(|w| w.borrow_mut().take()) else {
        return Ok(());
    };
    let flow = watcher(progress);
    WATCHER.with(|w| {
        let mut slot = w.borrow_mut();
        if slot.is_none() {
            *slot = Some(watcher);
        }
    });
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Error::Interrupted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn reports_reach_the_innermost_watcher_and_the_outer_one_is_restored() -> Result<()> {
        let outer = Rc::new(Cell::new(0));
        let inner = Rc::new(Cell::new(0));
        let (o, i) = (outer.clone(), inner.clone());
        watch(
            move |_| {
                o.set(o.get() + 1);
                ControlFlow::Continue(())
            },
            || -> Result<()> {
                report(Progress::Solver { epochs: 1 })?;
                watch(
                    move |_| {
                        i.set(i.get() + 1);
                        ControlFlow::Break(())
                    },
                    || {
                        let stopped = report(Progress::Step { done: 1, total: 2 });
                        assert!(matches!(stopped, Err(Error::Interrupted)));
                    },
                );
                report(Progress::Solver { epochs: 2 })
            },
        )?;
        assert_eq!((outer.get(), inner.get()), (2, 1));
        // No watcher: reports are ignored.
        report(Progress::Solver { epochs: 3 })
    }
}
