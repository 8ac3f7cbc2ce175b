//! `authenticate`: Auth.Authenticate with the `--user` credentials, over and over. Each call
//! costs the server a bcrypt comparison (tens of milliseconds of CPU at etcd's default cost 10)
//! and the issue of a token (a raft entry for simple tokens, a signature for JWTs), so this
//! measures the server's login rate and, run beside another workload, whether a storm of logins
//! holds up other clients. The connections themselves authenticate once when made, before the
//! clock starts; the tokens the calls return are discarded.

use std::future::Future;
use std::sync::Arc;

use etcd_client::AuthClient;
use serde_json::json;

use crate::cli::Global;
use crate::conn;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::runner::{self, Worker};

struct AuthenticateWorker {
    auth: AuthClient,
    name: Arc<str>,
    password: Arc<str>,
}

impl Worker for AuthenticateWorker {
    fn call(&mut self, _seq: u64) -> (usize, impl Future<Output = Result<(), etcd_client::Error>> + Send) {
        let (mut auth, name, password) = (self.auth.clone(), self.name.to_string(), self.password.to_string());
        (0, async move { auth.authenticate(name, password).await.map(drop) })
    }
}

pub async fn run(g: &Global) -> Result<Report, String> {
    let user = g.user.as_ref().ok_or("authenticate needs --user NAME:PASSWORD")?;
    let clients = conn::connect(g).await?;
    let (name, password): (Arc<str>, Arc<str>) = (user.name.as_str().into(), user.password.as_str().into());
    let workers = (0..g.clients)
        .map(|i| AuthenticateWorker {
            auth: clients[i % clients.len()].auth_client(),
            name: name.clone(),
            password: password.clone(),
        })
        .collect();
    let rec = Arc::new(Recorder::new(&["authenticate"]));
    let elapsed = runner::run(&super::opts(g, "authenticate"), &rec, workers).await;
    Ok(Report::from_recorder("authenticate", &rec, elapsed, super::config(g, json!({}))))
}
