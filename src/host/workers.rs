//! A bounded pool of threads for long blocking jobs (model calls through the credential proxy):
//! a job runs on an idle thread when there is one, on a new thread while fewer than `max` are
//! alive, and is handed back (refused) when all `max` are busy. Threads that stay idle for
//! `idle_exit` end, so a quiet host holds none and a busy one starts no thread per job.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send>;

struct State {
    jobs: VecDeque<Job>,
    idle: usize,
    live: usize,
    /// Threads started over the pool's life (for tests and the bench).
    started: u64,
}

pub struct Workers {
    name: &'static str,
    max: usize,
    idle_exit: Duration,
    state: Mutex<State>,
    wake: Condvar,
}

impl Workers {
    pub fn new(name: &'static str, max: usize, idle_exit: Duration) -> Arc<Workers> {
        Arc::new(Workers {
            name,
            max: max.max(1),
            idle_exit,
            state: Mutex::new(State { jobs: VecDeque::new(), idle: 0, live: 0, started: 0 }),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on a pool thread, or gives it back when every one of `max` threads is busy
    /// (or a thread cannot be started).
    pub fn run<F: FnOnce() + Send + 'static>(self: &Arc<Self>, job: F) -> Result<(), F> {
        let mut st = self.lock();
        let waiting = st.jobs.len();
        if st.idle > waiting {
            st.jobs.push_back(Box::new(job));
            drop(st);
            self.wake.notify_one();
            return Ok(());
        }
        if st.live >= self.max {
            return Err(job);
        }
        let me = self.clone();
        let spawned = std::thread::Builder::new().name(self.name.into()).spawn(move || me.work());
        if let Err(e) = spawned {
            log::error!("{}: cannot start a thread: {e}", self.name);
            return Err(job);
        }
        st.live += 1;
        st.started += 1;
        st.jobs.push_back(Box::new(job));
        Ok(())
    }

    fn work(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                // A job that panics ends only itself: the thread goes on with the next.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                st = self.lock();
                continue;
            }
            st.idle += 1;
            let (next, waited) =
                self.wake.wait_timeout(st, self.idle_exit).unwrap_or_else(|e| e.into_inner());
            st = next;
            st.idle -= 1;
            if waited.timed_out() && st.jobs.is_empty() {
                st.live -= 1;
                return;
            }
        }
    }

    /// Threads alive now, and started so far.
    pub fn threads(&self) -> (usize, u64) {
        let st = self.lock();
        (st.live, st.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn threads_are_reused_bounded_and_end_when_idle() {
        let pool = Workers::new("test-worker", 2, Duration::from_millis(200));
        let (done_tx, done) = mpsc::channel();
        for i in 0..5 {
            let tx = done_tx.clone();
            // One after another: each finds the thread the last one used idle.
            pool.run(move || tx.send(i).unwrap()).ok().unwrap();
            assert_eq!(done.recv_timeout(Duration::from_secs(5)).unwrap(), i);
            // The thread is idle again once it waits; wait for that before the next.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while pool.lock().idle == 0 {
                assert!(std::time::Instant::now() < deadline, "the worker never went idle");
                std::thread::yield_now();
            }
        }
        assert_eq!(pool.threads(), (1, 1), "one thread did all five");

        // Two busy jobs fill it; a third is handed back.
        let (release_tx, release) = mpsc::channel::<()>();
        let release = Arc::new(Mutex::new(release));
        for _ in 0..2 {
            let r = release.clone();
            let tx = done_tx.clone();
            pool.run(move || {
                let _ = r.lock().unwrap().recv_timeout(Duration::from_secs(5));
                tx.send(99).unwrap();
            })
            .ok()
            .unwrap();
        }
        assert!(pool.run(|| {}).is_err(), "all threads busy: refused");
        release_tx.send(()).unwrap();
        release_tx.send(()).unwrap();
        assert_eq!(done.recv_timeout(Duration::from_secs(5)).unwrap(), 99);
        assert_eq!(done.recv_timeout(Duration::from_secs(5)).unwrap(), 99);
        assert_eq!(pool.threads().1, 2);

        // A job that panics does not take its thread down with it.
        let tx = done_tx.clone();
        pool.run(|| panic!("a failing job")).ok().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if pool
                .run({
                    let tx = tx.clone();
                    move || tx.send(7).unwrap()
                })
                .is_ok()
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        assert_eq!(done.recv_timeout(Duration::from_secs(5)).unwrap(), 7);

        // Idle past `idle_exit`: every thread ends.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.threads().0 > 0 {
            assert!(std::time::Instant::now() < deadline, "idle threads did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
