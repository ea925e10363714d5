// Package promote is the root of kropipe's promotion engine. The work is done in its
// sub-packages; data flows one way, discovery → decision → write → sync:
//
//	config or argocd (the stages) ──┐
//	registries ──► warehouse ──► stage (decides) ──► gitwrite ──► Git
//	                                  └──► argocd (health gate) ──► Argo CD: sync, verify
//	                                              └──► verify ──► Jobs, AnalysisRuns
//
// Discovery and decision:
//   - warehouse lists a repository's tags in OCI registries and ranks them; freight is the
//     immutable record of one version (image, tag, digest).
//   - stage is the engine: per stage it decides what to promote (upstream, soak, approval,
//     pause, rejected values), keeps the state through a Store and records verifications.
//     A release group (group.go) is a stage whose freight is a set of member values
//     (freight.Set), written as one commit (gitwrite set.go) and verified together.
//
// Writing to Git:
//   - gitwrite keeps one persistent clone per repository, commits each change (yamledit
//     changes only the scalar's bytes) and pushes once per branch; it reads the files and
//     the history back from its clones. trailer is the format of the Kropipe-* trailers
//     those commits carry, read by Git's rules; signing signs every commit with the
//     team's SSH or OpenPGP key (signingtest makes keys and verifies with real git).
//
// Where stages come from, and where state lives:
//   - config reads promoter.yaml (local mode); argocd derives stages from kropipe.io/*
//     annotations, finds Argo CD's Git credentials, syncs the promoted Application and
//     verifies it (the health gate); suggest gives both their "did you mean" hints.
//   - verify runs a stage's verification in the cluster once the gate saw its Application
//     Synced and Healthy: Jobs read from Git and Argo Rollouts AnalysisRuns, named by stage,
//     freight and promotion commit so a new leader adopts them and a re-promotion does not.
//   - kubestate keeps the engine's state in a ConfigMap; leader elects the one replica
//     that writes; shard (--shards) instead spreads the pipelines over the replicas: member
//     Leases, a fenced Lease and a state ConfigMap per shard, the owner by rendezvous hashing.
//
// Serving:
//   - controller is `promoter controller`: a replica's loop, probes, events and problems;
//     local is `promoter run` and the stage commands on promoter.yaml without a cluster;
//     pass bounds both's passes (--pass-timeout, --shutdown-grace); api serves the HTTP
//     API and page the pipeline page at / on its address; webhook receives registry
//     notifications; metrics counts promotions, registry requests and push retries for
//     Prometheus; printers writes what the commands print.
//
// For tests and the demo: gitserver (git http-backend on 127.0.0.1) and registrytest (an
// in-memory OCI registry); faults is the fault suite against the real binary, which
// crashpoint kills at named steps; addrtest hands tests loopback addresses. cmd/promoter holds only flags, wiring and output.
package promote
