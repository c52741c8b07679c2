//! Scraping `/metrics` the way Prometheus does: an HTTP/1.1 GET on the
//! server's real socket, the OpenMetrics text parsed into samples.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The samples of one scrape, by series (`name{labels}` exactly as
/// written, labels in the server's order).
#[derive(Debug)]
pub struct Scrape {
    pub content_type: String,
    pub samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// The value of the series named `name` whose labels include every
    /// `key="value"` of `labels`; panics when none or several match.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let matching: Vec<(&String, &f64)> = self
            .samples
            .iter()
            .filter(|(series, _)| {
                let (series_name, series_labels) = match series.split_once('{') {
                    Some((series_name, rest)) => (series_name, rest),
                    None => (series.as_str(), ""),
                };
                series_name == name
                    && labels
                        .iter()
                        .all(|(key, value)| series_labels.contains(&format!("{key}=\"{value}\"")))
            })
            .collect();
        match matching.as_slice() {
            [(_, value)] => **value,
            _ => panic!(
                "expected one series {name} with {labels:?}, found {matching:?} in {:#?}",
                self.samples
            ),
        }
    }
}

/// GETs `/metrics` from `address` and parses it.
pub async fn scrape(address: SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect to the metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tributary\r\nConnection: close\r\n\r\n")
        .await
        .expect("send the request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("read the response");
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let body = if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics ends with # EOF: {body}"
    );
    let samples = body
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            (series.to_owned(), value)
        })
        .collect();
    Scrape {
        content_type: header("content-type"),
        samples,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut text = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return text;
        }
        text.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}
