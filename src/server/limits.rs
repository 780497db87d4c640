//! Per-peer and per-client limits: connections per IP address, requests per connection,
//! and a request rate per client certificate.
//!
//! The global connection cap lives in the accept loop; these limits keep one host or one
//! compromised client from taking the whole server.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Buckets of clients silent for this long are forgotten when the table grows large.
const IDLE_BUCKET: Duration = Duration::from_secs(600);
/// Table size from which idle buckets are pruned.
const PRUNE_ABOVE: usize = 10_000;

/// Limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    pub max_connections_per_ip: usize,
    pub max_requests_per_connection: usize,
    /// Requests a client may send at once before the rate applies.
    pub client_burst: u32,
    /// Requests per second a client may sustain.
    pub client_requests_per_second: f64,
}

/// The limits' state, shared by all connections.
#[derive(Debug)]
pub struct Limits {
    pub settings: LimitSettings,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Holds one connection's place in its IP address's count until dropped.
#[derive(Debug)]
pub struct IpSlot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    pub fn new(settings: LimitSettings) -> Limits {
        Limits {
            settings,
            per_ip: Mutex::default(),
            buckets: Mutex::default(),
        }
    }

    /// Takes a connection slot for `ip`, or returns `None` when it has too many open.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut counts = self
            .per_ip
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.settings.max_connections_per_ip {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Takes one request from the client's token bucket, or returns how long to wait.
    pub fn admit_request(&self, client: &str, now: Instant) -> Result<(), Duration> {
        let burst = f64::from(self.settings.client_burst.max(1));
        let rate = self.settings.client_requests_per_second.max(0.001);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, (_, last)| now.duration_since(*last) < IDLE_BUCKET);
        }
        let (tokens, last) = buckets.entry(client.to_owned()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - *tokens) / rate).max(Duration::from_secs(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_ip: usize, burst: u32, rate: f64) -> Arc<Limits> {
        Arc::new(Limits::new(LimitSettings {
            max_connections_per_ip: per_ip,
            max_requests_per_connection: 10,
            client_burst: burst,
            client_requests_per_second: rate,
        }))
    }

    #[test]
    fn connections_per_ip_are_capped_and_released() {
        let limits = limits(2, 1, 1.0);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = limits.enter(ip).unwrap();
        let _second = limits.enter(ip).unwrap();
        assert!(limits.enter(ip).is_none());
        assert!(limits.enter("192.0.2.8".parse().unwrap()).is_some());
        drop(first);
        assert!(limits.enter(ip).is_some());
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let limits = limits(1, 3, 2.0);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limits.admit_request("web412", start), Ok(()));
        }
        let wait = limits.admit_request("web412", start).unwrap_err();
        assert!(wait >= Duration::from_secs(1));
        assert_eq!(limits.admit_request("other", start), Ok(()));
        assert_eq!(
            limits.admit_request("web412", start + Duration::from_millis(600)),
            Ok(())
        );
    }
}
