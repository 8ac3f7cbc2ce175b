//! A flusher of a batching persistence service, end to end: create a table, buffer some segments,
//! then claim, "write" and commit every waiting buffer, and look the files up by day.
//!
//! `cargo run --release -p metastore-client --example flusher -- http://127.0.0.1:2379`

use metastore_client::buffer::{Buffers, Segment};
use metastore_client::catalog::Catalog;
use metastore_client::concurrency::Session;
use metastore_client::index::{DataFile, Index};

#[tokio::main]
async fn main() -> metastore_client::Result<()> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:2379".into());
    let client = etcd_client::Client::connect([endpoint], None).await?;
    Catalog::new(&client).create_table("demo", None, true, "example", "flusher demo").await?;

    let buffers = Buffers::new(&client);
    for (id, day) in [("42", "2024-05-01"), ("42", "2024-05-02"), ("7", "2024-05-01")] {
        let segment =
            Segment { rows: 100, bytes: 8_000, first_ts: 0, last_ts: 99, location: format!("wal/{id}/{day}") };
        buffers.append("demo", id, day, &segment).await?;
    }

    let session = Session::new(&client, 10).await?;
    loop {
        let claims = buffers.claim(&session, "demo", "example-flusher", 16).await?;
        if claims.is_empty() {
            break;
        }
        for claim in claims {
            // A real flusher writes the segments' rows to object storage here.
            let path = format!("s3://bucket/demo/{}/{}/{}.parquet", claim.id, claim.day, claim.token);
            let stats = buffers.commit(&claim, &[DataFile::new(path, claim.bytes(), claim.rows())]).await?;
            println!("flushed {}/{}: table now has {} files", claim.id, claim.day, stats.file_count);
        }
    }
    for e in Index::new(&client).by_day("demo", "2024-05-01").await? {
        println!("2024-05-01 id={} {}", e.id, e.file.path);
    }
    session.close().await
}
