package argocd

// AnnotationDoc describes one kropipe.io/* annotation for people: the table below is what
// Derive accepts (knownKeys is made from it) and what docs/reference/annotations.md is
// generated from (internal/tools/docgen), so the documentation cannot list a key the
// promoter refuses or miss one it reads.
type AnnotationDoc struct {
	Key string
	// Type is the value's shape in words ("duration", "comma-separated list", "push | pull-request").
	Type string
	// Default is what an absent annotation means; "" when there is none.
	Default string
	// Example is a value (the reference quotes it for YAML where needed).
	Example string
	// Description says what it does, in a sentence or three (Markdown).
	Description string
}

// Annotations lists every kropipe.io/* annotation Derive reads, in the order the
// reference shows them. An ApplicationSet's annotations apply to every Application it owns;
// an Application's own win, and an own annotation set to "" removes the ApplicationSet's.
var Annotations = []AnnotationDoc{
	{Key: AnnImage, Type: "image repository", Example: "registry.example.com/team/frontend",
		Description: "Opts the Application in: the image repository whose tags the stage promotes. Without it the other `kropipe.io/*` annotations of an Application are a problem of that stage."},
	{Key: AnnStrategy, Type: "semver | lexical | newest | digest", Default: "semver", Example: "semver",
		Description: "How the next tag is chosen: the highest `[v]MAJOR.MINOR.PATCH` tag matching the constraint (`semver`), the tag that sorts last as a string (`lexical`), the tag whose image config says it was built last (`newest`), or one mutable tag followed by digest (`digest`)."},
	{Key: AnnConstraint, Type: "string", Example: "^1.2",
		Description: "For `semver`, a Masterminds SemVer constraint a tag must meet; for `digest`, the tag to follow (default `latest`). Other strategies take none."},
	{Key: AnnAllowTags, Type: "Go regular expression", Example: `^1\.`,
		Description: "Only tags matching it are candidates."},
	{Key: AnnIgnoreTags, Type: "Go regular expression", Example: "-rc",
		Description: "Tags matching it are never candidates."},
	{Key: AnnPlatform, Type: "os/arch[/variant]", Default: "linux/amd64", Example: "linux/arm64",
		Description: "Which image of a multi-platform index the `newest` strategy reads the build time from."},
	{Key: AnnFile, Type: "path in the repository", Default: "`<spec.source.path>/instance.yaml`", Example: "develop/frontend/instance.yaml",
		Description: "The file the stage writes the tag into."},
	{Key: AnnKey, Type: "dotted YAML key", Default: "spec.values.deployment.tag", Example: "spec.values.deployment.tag",
		Description: "The key in the file whose scalar value is replaced; only its bytes change, comments and formatting stay."},
	{Key: AnnStage, Type: "stage name", Default: "the Application's name", Example: "develop-frontend",
		Description: "The stage's name, as commands, the API and other stages' `upstream` name it."},
	{Key: AnnUpstream, Type: "stage name", Example: "develop-frontend",
		Description: "The stage whose verified freight this stage takes (after `soak`). Without it the stage takes what the registry offers."},
	{Key: AnnAutoPromote, Type: "boolean", Default: `"true"`, Example: "false",
		Description: "`\"false\"` makes every promotion wait for `promoter approve`."},
	{Key: AnnSoak, Type: "duration", Example: "10m",
		Description: "How long the upstream must have verified a freight before this stage takes it. An ApplicationSet's soak applies only to its members that have an upstream."},
	{Key: AnnInterval, Type: "duration", Default: "5m", Example: "1m",
		Description: "How often the stage's registry is polled; may shorten, not lengthen, `--interval`."},
	{Key: AnnAutoRollback, Type: "boolean", Default: `"false"`, Example: "true",
		Description: "A promotion that stays Degraded or fails to sync past `--health-timeout`, or fails verification, is rolled back by a commit, and that tag is never auto-promoted to the stage again."},
	{Key: AnnSource, Type: "index or name of a source", Example: "0",
		Description: "For a multi-source Application: which of `spec.sources` holds the stage's file (required when there are several)."},
	{Key: AnnPullSecrets, Type: "comma-separated Secret names", Example: "regcred,mirror-creds",
		Description: "Secrets of type `kubernetes.io/dockerconfigjson` in the promoter's namespace with the credentials of the stage's registry, used with those of `--pull-secrets`; matched to registries by host as the kubelet does, re-read every minute."},
	{Key: AnnVerifyJob, Type: "path relative to `spec.source.path`", Example: "verify",
		Description: "A Job manifest, or a folder of them, read at the promotion commit and run in the destination namespace once the Application is Synced and Healthy; the freight is verified only when every Job completes. See [Verification](../verification.md)."},
	{Key: AnnVerifyAnalysis, Type: "comma-separated template names", Example: "error-rate, cluster:smoke",
		Description: "Argo Rollouts AnalysisTemplates (`cluster:NAME` for a ClusterAnalysisTemplate) run as one AnalysisRun after each promotion. See [Verification](../verification.md)."},
	{Key: AnnVerifyTimeout, Type: "duration", Default: "10m", Example: "15m",
		Description: "Bounds each of the two verifications; set only with `verify-job` or `verify-analysis`."},
	{Key: AnnGroup, Type: "group name", Example: "develop/shop",
		Description: "The release group the stage moves with: the stages sharing it are promoted as one set, in one commit. See [Release groups](../release-groups.md)."},
	{Key: AnnGroupRequireAll, Type: "boolean", Default: `"false"`, Example: "true",
		Description: "`\"true\"` makes the group wait until every member has a new candidate; every member must say the same."},
	{Key: AnnGroupSubject, Type: "text/template", Default: "`Promote shop: <changes>` (`Roll back …` for a rollback)", Example: "Release {{.Name}}: {{.Changes}}",
		Description: "The group's commit subject; sees `.Name`, `.Group`, `.Kind`, `.Changes`, `.Members`. Every member must say the same."},
	{Key: AnnWrite, Type: "push | pull-request", Default: "push", Example: "pull-request",
		Description: "How a promotion reaches the branch: pushed, or proposed in a pull request. See [Pull requests](../pull-requests.md)."},
	{Key: AnnMerge, Type: "manual | auto", Default: "manual", Example: "auto",
		Description: "With `write: pull-request`: a human merges, or kropipe merges once the forge says the pull request is mergeable and its checks passed."},
	{Key: AnnMergeMethod, Type: "merge | squash | rebase", Default: "merge", Example: "squash",
		Description: "With `write: pull-request`, how kropipe merges (auto merges); GitLab refuses `rebase` (set the project to fast-forward merges instead)."},
	{Key: AnnPullRequestBranch, Type: "text/template", Default: "kropipe/{{.Stage}}", Example: "promote/{{.Stage}}",
		Description: "With `write: pull-request`, the head branch (sees `.Stage`, `.Branch`); never the target branch."},
	{Key: AnnPullRequestLabels, Type: "comma-separated list", Example: "promotion,automated",
		Description: "With `write: pull-request`, labels set on each pull request opened."},
	{Key: AnnPullRequestReviewers, Type: "comma-separated list", Example: "alice,org/sre",
		Description: "With `write: pull-request`, reviewers asked on each pull request opened (`org/team` for a GitHub team)."},
	{Key: AnnForge, Type: "github | gitlab | gitea | forgejo | bitbucket", Default: "from the repository URL's host", Example: "gitea",
		Description: "The forge whose API opens pull requests (and, with `commit-via: github-api`, makes commits); needed for hosts not named after their forge."},
	{Key: AnnForgeAPIURL, Type: "URL", Default: "derived from the repository URL", Example: "https://git.example.com/api/v1",
		Description: "The forge's API base URL, when it is not where it usually is."},
	{Key: AnnCommitVia, Type: "git | github-api", Default: "git", Example: "github-api",
		Description: "Who makes the commits, in either write mode: kropipe (and pushes them), or GitHub through its API (signed and shown *Verified* when the repository's credentials are a GitHub App). See [Signed commits](../signed-commits.md)."},
	{Key: AnnVerifySignature, Type: "comma-separated policy names", Example: "release,offline",
		Description: "Signature policies (the promoter's `--signature-policies`, never the Application's) that every image the stage promotes must satisfy, all of them. See [Image signatures](../image-signatures.md)."},
}

// GroupAgreement are the annotations every member of a release group must give alike
// (for the reference; groups checks them).
func GroupAgreement() []string {
	return append([]string{AnnGroupRequireAll, AnnGroupSubject}, writeAgreement...)
}

// knownKeys are the annotations Derive accepts: those documented above.
var knownKeys = func() []string {
	keys := make([]string, len(Annotations))
	for i, a := range Annotations {
		keys[i] = a.Key
	}
	return keys
}()
