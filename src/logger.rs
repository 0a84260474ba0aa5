//! A small logger behind the `log` facade: one line per event in a stable `key=value` form,
//!
//! `ts=2026-11-21T19:09:49.123Z level=info module=host::router msg=routed 3 messages`
//!
//! (`msg` last, running to the end of the line, with `\\` and line breaks escaped, so a line is
//! one event and ends where its message does). Levels
//! come per module from `PINCER_LOG` (`info`, or `warn,host::router=debug,webchat=trace`: the
//! longest matching module prefix wins). Lines go to stderr, or to a file whose size is bounded
//! (it is renamed to `<file>.1` when full, replacing the previous one). A masker installed by the
//! host removes secrets from every line before it is written.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Levels per module: a default and `(module prefix, level)` overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    pub default: log::LevelFilter,
    pub modules: Vec<(String, log::LevelFilter)>,
}

impl Levels {
    pub fn all(level: log::LevelFilter) -> Levels {
        Levels { default: level, modules: Vec::new() }
    }

    /// Parses `PINCER_LOG`: comma-separated `level` and `module=level` directives.
    pub fn parse(spec: &str) -> Result<Levels, String> {
        let mut out = Levels::all(log::LevelFilter::Info);
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None => out.default = parse_level(part).ok_or_else(|| format!("unknown level {part:?}"))?,
                Some((module, level)) => {
                    let level =
                        parse_level(level.trim()).ok_or_else(|| format!("unknown level {level:?}"))?;
                    let module = module.trim().trim_start_matches("pincer::").to_string();
                    if module.is_empty()
                        || !module.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                    {
                        return Err(format!("invalid module {module:?}"));
                    }
                    out.modules.push((module, level));
                }
            }
        }
        out.modules.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
        Ok(out)
    }

    /// The level for a record's target (`pincer::host::router` → `host::router`).
    pub fn for_target(&self, target: &str) -> log::LevelFilter {
        let t = target.trim_start_matches("pincer::");
        self.modules
            .iter()
            .find(|(m, _)| t == m || t.strip_prefix(m.as_str()).is_some_and(|rest| rest.starts_with("::")))
            .map_or(self.default, |(_, l)| *l)
    }

    /// The most verbose level any module has (the facade's filter).
    pub fn max(&self) -> log::LevelFilter {
        self.modules.iter().map(|(_, l)| *l).fold(self.default, std::cmp::max)
    }
}

/// Where lines go.
pub enum Sink {
    Stderr,
    /// A file of at most `max_bytes` (then rotated once).
    File {
        path: PathBuf,
        max_bytes: u64,
    },
}

struct FileSink {
    path: PathBuf,
    max_bytes: u64,
    file: Option<File>,
    written: u64,
}

impl FileSink {
    fn write(&mut self, line: &[u8]) {
        if self.file.is_none() || self.written + line.len() as u64 > self.max_bytes {
            if self.file.take().is_some()
                || self.path.metadata().is_ok_and(|m| m.len() + line.len() as u64 > self.max_bytes)
            {
                let _ = std::fs::rename(&self.path, rotated(&self.path));
            }
            self.file = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).ok();
            self.written = self.path.metadata().map(|m| m.len()).unwrap_or(0);
        }
        let written = self.file.as_mut().is_some_and(|f| f.write_all(line).is_ok());
        if written {
            self.written += line.len() as u64;
        } else {
            // The file cannot be written: the line still goes somewhere.
            let _ = std::io::stderr().lock().write_all(line);
        }
    }
}

/// `<file>.1`.
pub fn rotated(path: &std::path::Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".1");
    PathBuf::from(p)
}

type Masker = fn(&str) -> String;

static MASKER: OnceLock<Masker> = OnceLock::new();

/// Installs the function that removes secrets from every line (once; the host's redaction).
pub fn set_masker(m: Masker) {
    let _ = MASKER.set(m);
}

struct Logger {
    levels: Levels,
    file: Option<Mutex<FileSink>>,
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= self.levels.for_target(meta.target())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut line =
            format_line(now.as_millis() as i64, record.level(), record.target(), &record.args().to_string());
        if let Some(mask) = MASKER.get() {
            line = mask(&line);
        }
        match &self.file {
            Some(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write(line.as_bytes()),
            // One write call per line so lines from several threads do not interleave.
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// One event as a line (with its newline). `msg` comes last and runs to the end of the line
/// (line breaks and other control characters escaped), so a message ends where the line does.
pub fn format_line(ms: i64, level: log::Level, target: &str, msg: &str) -> String {
    let mut line = format!(
        "ts={} level={} module={} msg=",
        format_utc_ms(ms),
        level.as_str().to_ascii_lowercase(),
        target.trim_start_matches("pincer::")
    );
    for c in msg.chars() {
        match c {
            '\\' => line.push_str("\\\\"),
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            c if c.is_control() => line.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => line.push(c),
        }
    }
    line.push('\n');
    line
}

/// Parses a level name as accepted by `PINCER_LOG`.
pub fn parse_level(s: &str) -> Option<log::LevelFilter> {
    match s.to_ascii_lowercase().as_str() {
        "off" => Some(log::LevelFilter::Off),
        "error" => Some(log::LevelFilter::Error),
        "warn" => Some(log::LevelFilter::Warn),
        "info" => Some(log::LevelFilter::Info),
        "debug" => Some(log::LevelFilter::Debug),
        "trace" => Some(log::LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger writing to stderr (once; later calls change nothing).
pub fn init(level: log::LevelFilter) {
    init_with(Levels::all(level), Sink::Stderr);
}

/// Installs the logger (once; later calls change nothing).
pub fn init_with(levels: Levels, sink: Sink) {
    let max = levels.max();
    let file = match sink {
        Sink::Stderr => None,
        Sink::File { path, max_bytes } => {
            Some(Mutex::new(FileSink { path, max_bytes, file: None, written: 0 }))
        }
    };
    if log::set_boxed_logger(Box::new(Logger { levels, file })).is_ok() {
        log::set_max_level(max);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for an epoch-millisecond instant (proleptic Gregorian, UTC).
pub fn format_utc_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_one_line_of_keys_and_values() {
        let line = format_line(0, log::Level::Warn, "pincer::host::router", "said \"hi\"\nthen \\ left");
        assert_eq!(
            line,
            "ts=1970-01-01T00:00:00.000Z level=warn module=host::router msg=said \"hi\"\\nthen \\\\ left\n"
        );
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn levels_per_module() {
        use log::LevelFilter::*;
        let l = Levels::parse("warn, host::router=debug, host=info ,webchat=trace").unwrap();
        assert_eq!(l.for_target("pincer::host::router"), Debug, "the longest prefix wins");
        assert_eq!(l.for_target("pincer::host::router::x"), Debug);
        assert_eq!(l.for_target("pincer::host::sweep"), Info);
        assert_eq!(l.for_target("pincer::hostile"), Warn, "a prefix ends at ::");
        assert_eq!(l.for_target("pincer::cli"), Warn);
        assert_eq!(l.max(), Trace);
        assert_eq!(Levels::parse("debug").unwrap(), Levels::all(Debug));
        for bad in ["loud", "host=loud", "=info", "a b=info"] {
            assert!(Levels::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_log_file_stays_within_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("pincer.log");
        let mut sink = FileSink { path: path.clone(), max_bytes: 1000, file: None, written: 0 };
        let line = format!("{}\n", "x".repeat(99));
        for _ in 0..35 {
            sink.write(line.as_bytes());
        }
        let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
        assert!(
            size(&path) <= 1000 && size(&rotated(&path)) <= 1000,
            "{} {}",
            size(&path),
            size(&rotated(&path))
        );
        assert_eq!(size(&path), 500, "35 lines: 10 + 10 + 10 rotated away, 5 in the file");
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(1_795_288_189_123), "2026-11-21T19:09:49.123Z");
        assert_eq!(format_utc_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
