//! The redirect handler: replies that mean "not here" or "not now" rather
//! than a failure of the command. In a cluster, `MOVED` and `ASK` send the
//! command to the node named (`TRYAGAIN`, and `CLUSTERDOWN` without
//! `--retry`: to the same one after a pause); with `--retry`, `LOADING`,
//! `BUSY`, `TRYAGAIN`, `MASTERDOWN` and `CLUSTERDOWN` (a failover under
//! way) end the session so that the command is sent again, waited for as
//! a lost connection is.
//!
//! Without `-c`, the first `MOVED` gets a hint to add it (the reply is
//! still an error).
//!
//! Place in the data flow: the first reply handler; a reply it takes over
//! is neither counted nor reported.

use super::{Flow, Reply, ReplyHandler};
use crate::cluster::{ClusterLinks, Redirect};
use crate::reply_failure::ReplyFailure;
use crate::summary::report;

/// Error replies that mean "not now" rather than "never": with `--retry`
/// the command is sent again after a pause instead of being counted.
const TRANSIENT_ERRORS: [&[u8]; 5] = [
    b"LOADING",
    b"BUSY",
    b"TRYAGAIN",
    b"MASTERDOWN",
    b"CLUSTERDOWN",
];

pub struct Redirects<'a> {
    /// Cluster mode: the shared links, and which primary this reader reads.
    pub cluster: Option<(&'a ClusterLinks<'a>, usize)>,
    /// Treat `LOADING`, `BUSY`… as "resend later" (`--retry`).
    resend_transient: bool,
    source_names: &'a [Option<String>],
    /// Without `-c`: the hint to add it was given (once per run).
    hinted_cluster_mode: bool,
}

impl<'a> Redirects<'a> {
    pub fn new(resend_transient: bool, source_names: &'a [Option<String>]) -> Self {
        Redirects {
            cluster: None,
            resend_transient,
            source_names,
            hinted_cluster_mode: false,
        }
    }
}

impl ReplyHandler for Redirects<'_> {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        let Some(message) = reply.error_message() else {
            return Flow::Continue;
        };
        if let Some((links, node)) = self.cluster
            && links.redirect(message, reply.batch, reply.index, node) == Redirect::Resent
        {
            links.settled(1);
            return Flow::Resent;
        }
        if self.cluster.is_none() && !self.hinted_cluster_mode && message.starts_with(b"MOVED ") {
            self.hinted_cluster_mode = true;
            report(
                "pipeload: hint: the server answered MOVED: it is a cluster node; add -c to load the whole cluster",
            );
        }
        if self.resend_transient && is_transient(message) {
            return Flow::Retry(ReplyFailure::Transient(format!(
                "{}: {}",
                reply.batch.position(reply.index, self.source_names, None),
                String::from_utf8_lossy(message)
            )));
        }
        Flow::Continue
    }
}

fn is_transient(message: &[u8]) -> bool {
    TRANSIENT_ERRORS.iter().any(|prefix| {
        message.starts_with(prefix) && matches!(message.get(prefix.len()), None | Some(b' '))
    })
}
