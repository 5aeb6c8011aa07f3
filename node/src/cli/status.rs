//! `troupe status`: the cluster as a terminal table, from any node's URL.
//!
//! The node named by `--url` gives the membership and the shard table (`/cluster`). Transit
//! and lease are each node's own state, so every live member is asked for its `/cluster` too,
//! at its advertised HTTP address, side by side and with a short timeout. A member that cannot
//! be reached from here (in Compose the advertised names resolve only inside the network) shows
//! `?` rather than stopping the table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::de::DeserializeOwned;
use troupe_http::views::{ClusterView, MemberView, ShardView};

/// Flags of `troupe status`.
#[derive(Args, Clone, Debug)]
pub struct StatusArgs {
    /// Any node's HTTP address (its admin address when it runs with `--admin-listen`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Milliseconds to wait for each node's answer.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
}

/// What one member said about itself.
#[derive(Debug)]
pub enum Answer {
    /// Its own `/cluster`.
    View(Box<ClusterView>),
    /// It could not be asked (dead, or its advertised address is not reachable from here).
    Unreachable(String),
}

/// Prints the table.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let http = client(Duration::from_millis(args.timeout_ms))?;
    let base = args.url.trim_end_matches('/');
    let view: ClusterView = get_json(&http, &format!("{base}/cluster")).await?;
    let answers = ask_members(&http, &view).await;
    print!("{}", render(&view, &answers));
    Ok(())
}

/// An HTTP client for the CLI's admin reads.
pub fn client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().timeout(timeout).build()?)
}

/// GETs `url` and decodes its JSON body, with an error that names the URL.
pub async fn get_json<T: DeserializeOwned>(http: &reqwest::Client, url: &str) -> anyhow::Result<T> {
    let response = http
        .get(url)
        .send()
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    let body = bounded_body(response, url).await?;
    if !status.is_success() {
        anyhow::bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("{url} did not answer with the JSON expected"))
}

/// Largest answer the CLI reads from a node (a `/cluster` of thousands of shards is a few MiB).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// The body of `response`, refused past [`MAX_ANSWER_BYTES`] instead of read into memory
/// whatever its size: the addresses asked come from gossip, not from the person at the
/// terminal.
async fn bounded_body(mut response: reqwest::Response, url: &str) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .with_context(|| format!("{url} broke off its answer"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            anyhow::bail!("{url} answered more than {MAX_ANSWER_BYTES} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `/cluster` of every member: the answering node's own view for itself, the others asked
/// side by side; dead members are not asked.
async fn ask_members(http: &reqwest::Client, view: &ClusterView) -> BTreeMap<String, Answer> {
    let asks = view.members.iter().map(|m| async move {
        let answer = if m.node_id == view.node {
            Answer::View(Box::new(view.clone()))
        } else if !m.live {
            Answer::Unreachable("dead".into())
        } else {
            match get_json(http, &format!("http://{}/cluster", m.http_addr)).await {
                Ok(own) => Answer::View(Box::new(own)),
                Err(error) => Answer::Unreachable(format!("{error:#}")),
            }
        };
        (m.node_id.clone(), answer)
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .collect()
}

/// The table: one row per member, then the shards in transit and anything that disagrees.
pub fn render(view: &ClusterView, answers: &BTreeMap<String, Answer>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cluster {} (as {} sees it): {} members, {} shards, replication factor {}\n",
        view.cluster,
        view.node,
        view.members.len(),
        view.shard_count,
        view.replication_factor
    );
    let header = [
        "NODE",
        "REGION",
        "STATUS",
        "LIVE",
        "GENERATION",
        "OWNS",
        "REPLICAS",
        "LEASE",
        "TRANSIT",
    ];
    let rows: Vec<Vec<String>> = view
        .members
        .iter()
        .map(|m| member_row(m, &view.shards, answers.get(&m.node_id)))
        .collect();
    out.push_str(&table(&header, &rows));
    let transit: Vec<String> = answers
        .iter()
        .filter_map(|(node, a)| match a {
            Answer::View(own) => Some((node, own)),
            Answer::Unreachable(_) => None,
        })
        .flat_map(|(node, own)| {
            own.transit.iter().map(move |t| {
                let mut line = format!("  {node}: shard {} {}", t.shard, t.state);
                if let Some(epoch) = &t.epoch {
                    let _ = write!(line, ", epoch {epoch}");
                }
                let _ = write!(line, ", applied {}", t.applied);
                if !t.waiting.is_empty() {
                    let _ = write!(line, ", waiting: {}", t.waiting.join(" "));
                }
                if let Some(ms) = t.due_in_ms {
                    let _ = write!(line, ", due in {ms} ms");
                }
                line
            })
        })
        .collect();
    if transit.is_empty() {
        out.push_str("\nno shard in transit\n");
    } else {
        let _ = writeln!(out, "\nshards in transit:\n{}", transit.join("\n"));
    }
    for (node, answer) in answers {
        match answer {
            Answer::View(own) if own.shards != view.shards => {
                let _ = writeln!(
                    out,
                    "note: {node} places shards differently from {} (membership is changing, or one view lags)",
                    view.node
                );
            }
            Answer::Unreachable(why) if why != "dead" => {
                let _ = writeln!(out, "note: {node} could not be asked: {why}");
            }
            _ => {}
        }
    }
    out
}

fn member_row(m: &MemberView, shards: &[ShardView], answer: Option<&Answer>) -> Vec<String> {
    let owns = shards
        .iter()
        .filter(|s| s.owner.as_deref() == Some(m.node_id.as_str()))
        .count();
    let replicas = shards
        .iter()
        .filter(|s| s.replicas.contains(&m.node_id))
        .count();
    let (lease, transit) = match answer {
        Some(Answer::View(own)) => (
            if own.lease_held { "held" } else { "lapsed" }.to_owned(),
            own.transit.len().to_string(),
        ),
        _ => ("?".to_owned(), "?".to_owned()),
    };
    vec![
        m.node_id.clone(),
        m.region.clone(),
        m.status.clone(),
        if m.live { "yes" } else { "no" }.to_owned(),
        m.generation.to_string(),
        owns.to_string(),
        replicas.to_string(),
        lease,
        transit,
    ]
}

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_http::views::TransitView;

    fn member(id: &str, live: bool) -> MemberView {
        MemberView {
            node_id: id.into(),
            generation: 7,
            region: "eu-west-1".into(),
            status: "ready".into(),
            live,
            http_addr: format!("{id}:8080"),
            rpc_addr: format!("{id}:7947"),
            gossip_addr: format!("{id}:7946"),
        }
    }

    fn view(node: &str) -> ClusterView {
        let shard = |n: u32, owner: &str, replica: &str| ShardView {
            shard: n,
            owner: Some(owner.into()),
            replicas: vec![replica.into()],
            manager: None,
        };
        ClusterView {
            cluster: "troupe".into(),
            node: node.into(),
            members: vec![member("n1", true), member("n2", true), member("n3", false)],
            shard_count: 3,
            replication_factor: 2,
            shards: vec![
                shard(0, "n1", "n2"),
                shard(1, "n2", "n1"),
                shard(2, "n1", "n2"),
            ],
            transit: Vec::new(),
            lease_held: true,
            gossip_tables: Default::default(),
        }
    }

    #[test]
    fn status_counts_owned_and_replicated_shards_and_shows_each_nodes_own_lease_and_transit() {
        let mut n2 = view("n2");
        n2.lease_held = false;
        n2.transit.push(TransitView {
            shard: 1,
            state: "taking-over".into(),
            epoch: Some("4@n2".into()),
            applied: 12,
            waiting: Vec::new(),
            due_in_ms: None,
        });
        let answers = BTreeMap::from([
            ("n1".to_owned(), Answer::View(Box::new(view("n1")))),
            ("n2".to_owned(), Answer::View(Box::new(n2))),
            ("n3".to_owned(), Answer::Unreachable("dead".into())),
        ]);
        let text = render(&view("n1"), &answers);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .skip_while(|l| !l.starts_with("NODE"))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows[0],
            [
                "n1",
                "eu-west-1",
                "ready",
                "yes",
                "7",
                "2",
                "1",
                "held",
                "0"
            ]
        );
        assert_eq!(
            rows[1],
            [
                "n2",
                "eu-west-1",
                "ready",
                "yes",
                "7",
                "1",
                "2",
                "lapsed",
                "1"
            ]
        );
        assert_eq!(
            rows[2],
            ["n3", "eu-west-1", "ready", "no", "7", "0", "0", "?", "?"]
        );
        assert!(text.contains("n2: shard 1 taking-over, epoch 4@n2, applied 12"));
        assert!(!text.contains("note:"), "{text}");
    }

    #[tokio::test]
    async fn an_answer_larger_than_the_bound_is_refused_not_read_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/cluster", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let total = MAX_ANSWER_BYTES + (1 << 20);
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {total}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            let chunk = vec![b' '; 1 << 20];
            for _ in 0..=total >> 20 {
                if stream.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let http = client(Duration::from_secs(30)).expect("client");
        let error = get_json::<ClusterView>(&http, &url)
            .await
            .expect_err("too large");
        assert!(
            format!("{error:#}").contains("answered more than"),
            "{error:#}"
        );
    }

    #[test]
    fn status_notes_a_member_that_places_shards_differently_or_cannot_be_asked() {
        let mut n2 = view("n2");
        n2.shards.swap(0, 1);
        let answers = BTreeMap::from([
            ("n1".to_owned(), Answer::View(Box::new(view("n1")))),
            ("n2".to_owned(), Answer::View(Box::new(n2))),
            (
                "n3".to_owned(),
                Answer::Unreachable("n3:8080 did not answer".into()),
            ),
        ]);
        let text = render(&view("n1"), &answers);
        assert!(text.contains("note: n2 places shards differently from n1"));
        assert!(text.contains("note: n3 could not be asked: n3:8080 did not answer"));
    }
}
