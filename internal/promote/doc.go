// Package promote is the root of kropipe's promotion engine; the work is done in its
// sub-packages, in the order data flows through them:
//
//   - warehouse discovers image versions in registries and returns freight,
//   - freight is the immutable record of one version (image, tag, digest),
//   - stage decides, per stage, what to promote (upstream, soak, approval, pause,
//     rejected tags) and records verifications,
//   - gitwrite commits the decisions into the GitOps repository (yamledit changes
//     only the scalar), one push per repository and branch,
//   - config reads promoter.yaml for local mode; api serves the debug HTTP API.
//
// cmd/promoter wires them together; gitserver serves Git over HTTP for tests and
// the demo.
package promote
