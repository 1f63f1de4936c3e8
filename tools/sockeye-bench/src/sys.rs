//! The operating-system side: /proc readings of the server under test, the generator's own
//! CPU time and file limit, and client socket creation (source address binding).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// CPU time (user + system) of `pid` in microseconds, from `/proc/<pid>/stat` fields 14 and 15.
pub fn process_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some((utime + stime) * 1_000_000 / ticks)
}

/// Resident set size of `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn process_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}/stat")).exists()
}

/// The 1-minute load average of the machine, to flag runs that shared the cores with other work.
pub fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// This process's CPU time (user + system) in microseconds.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        let mut rl: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return 1024;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit { rlim_cur: rl.rlim_max, rlim_max: rl.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                rl.rlim_cur = rl.rlim_max;
            }
        }
        rl.rlim_cur
    }
}

/// The `i`-th of `n` source addresses 127.0.0.1, 127.0.0.2, ... (round robin), or `None` when
/// the kernel should choose (one source address, or an IPv6 target).
pub fn source_addr(target: &SocketAddr, n: u32, i: usize) -> Option<SocketAddr> {
    if n <= 1 || !target.is_ipv4() {
        return None;
    }
    let k = (i as u64 % u64::from(n)) as u32;
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)) + k);
    Some(SocketAddr::new(IpAddr::V4(ip), 0))
}

/// Starts a non-blocking TCP connect to `target`, optionally from `source`. With a source
/// address, IP_BIND_ADDRESS_NO_PORT lets the kernel pick the port at connect time, per
/// (source, destination) pair, instead of reserving one per source address at bind.
pub fn start_connect(target: SocketAddr, source: Option<SocketAddr>) -> io::Result<mio::net::TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if target.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let sock = Socket::new(domain, Type::STREAM.nonblocking().cloexec(), Some(Protocol::TCP))?;
    sock.set_tcp_nodelay(true)?;
    if let Some(src) = source {
        set_bind_no_port(&sock);
        sock.bind(&src.into())?;
    }
    match sock.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(mio::net::TcpStream::from_std(std::net::TcpStream::from(sock)))
}

fn set_bind_no_port(sock: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: valid fd and option value; failure only means ports are reserved at bind.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_readings() {
        let pid = std::process::id();
        assert!(process_cpu_us(pid).is_some());
        assert!(process_rss_kb(pid).unwrap() > 0);
        assert!(process_exists(pid));
    }

    #[test]
    fn source_addresses_round_robin() {
        let t: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!(source_addr(&t, 1, 5), None);
        assert_eq!(source_addr(&t, 4, 0), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(source_addr(&t, 4, 5), Some("127.0.0.2:0".parse().unwrap()));
        assert_eq!(source_addr(&"[::1]:80".parse().unwrap(), 4, 1), None);
    }
}
