package config

import "strings"

// FieldDoc describes one field of promoter.yaml for people. The parser takes the fields it
// accepts from this table (fieldNames), and docs/reference/promoter-yaml.md is generated
// from it (internal/tools/docgen), so the reference cannot miss a field the parser reads nor
// list one it refuses.
type FieldDoc struct {
	// Path is the field's place: dotted, "[]" for a list's entries, "<name>" for a
	// mapping's keys (signaturePolicies.<name>.cosign.key).
	Path string
	// Type is the value's shape in words.
	Type string
	// Default is what leaving the field out means; "" when there is none.
	Default string
	// Example is a value as written in the file (YAML flow style).
	Example string
	// Description says what it does (Markdown).
	Description string
}

// policyPath is where a signature policy's fields live; a stage's signature: entries
// written in place take the same fields (and name).
const policyPath = "signaturePolicies.<name>"

// Fields lists every field of promoter.yaml, parents before their children, each
// parent's children in the order messages list them.
var Fields = []FieldDoc{
	{Path: "git", Type: "mapping", Description: "The GitOps repository the stages write to. Required."},
	{Path: "registries", Type: "list of mappings", Description: "How to reach registry hosts; a host not listed is reached over HTTPS with default settings."},
	{Path: "stages", Type: "list of mappings", Description: "The stages, in any order. Required."},
	{Path: "groups", Type: "list of mappings", Description: "Release groups: stages that move as one set, in one commit. See [Release groups](../release-groups.md)."},
	{Path: "interval", Type: "duration", Default: "`--interval` (5m)", Example: "1m",
		Description: "Poll period; may shorten the command line's `--interval`. A stage's own `interval` may shorten it further."},
	{Path: "signaturePolicies", Type: "mapping of names to policies", Example: "{release: {cosign: {key: cosign.pub}}}",
		Description: "Named image signature policies that stages' `signature` lists name. See [Image signatures](../image-signatures.md)."},

	{Path: "git.url", Type: "clone URL (https, http, ssh, file, or scp-like `git@host:org/repo.git`)", Example: "https://git.example.com/platform/gitops.git",
		Description: "The repository's clone URL. Required. A URL holding a password is refused: use `git.credentials`."},
	{Path: "git.branch", Type: "branch name", Default: "main", Example: "main", Description: "The branch every stage writes to."},
	{Path: "git.author", Type: "mapping", Description: "Author and committer of the promoter's commits."},
	{Path: "git.author.name", Type: "string", Default: "kropipe", Example: "kropipe", Description: "The author's name."},
	{Path: "git.author.email", Type: "string", Default: "kropipe@localhost", Example: "kropipe@example.com",
		Description: "The author's email. A forge shows signed commits *Verified* only when it belongs to the signing key's owner."},
	{Path: "git.credentials", Type: "mapping", Default: "the `KROPIPE_GIT_*` environment",
		Description: "Where the Git (and forge) credentials come from; files win over the environment. The secrets are read only when needed and never printed."},
	{Path: "git.credentials.env", Type: "environment variable prefix", Default: DefaultCredentialsEnv, Example: "GITOPS_",
		Description: "Prefix of the environment variables holding credentials: `<prefix>USERNAME`, `<prefix>PASSWORD`, `<prefix>TOKEN`, `<prefix>SSH_KEY_PASSPHRASE` (each also as `<prefix>…_FILE` naming a file), `<prefix>SSH_KEY` and `<prefix>SSH_KNOWN_HOSTS` (paths)."},
	{Path: "git.credentials.username", Type: "string", Example: "kropipe-bot", Description: "User name for password authentication (not a secret)."},
	{Path: "git.credentials.passwordFile", Type: "file", Example: "/run/secrets/git-password", Description: "File holding the password (with `username`)."},
	{Path: "git.credentials.tokenFile", Type: "file", Example: "/run/secrets/git-token", Description: "File holding an access token."},
	{Path: "git.credentials.sshKeyFile", Type: "file", Example: "/run/secrets/id_ed25519", Description: "SSH private key, for ssh URLs."},
	{Path: "git.credentials.sshKnownHostsFile", Type: "file", Example: "/run/secrets/known_hosts", Description: "known_hosts file checking the SSH server's key."},
	{Path: "git.credentials.forgeTokenFile", Type: "file", Default: "`KROPIPE_FORGE_TOKEN` (or `_FILE`), else the Git token or password", Example: "/run/secrets/forge-token",
		Description: "The forge API token for pull-request mode (and `commitVia: github-api`)."},
	{Path: "git.credentials.forgeUsername", Type: "string", Default: "`KROPIPE_FORGE_USERNAME`", Example: "kropipe-bot", Description: "Bitbucket app passwords only: the user the app password belongs to."},
	{Path: "git.credentials.githubApp", Type: "mapping", Example: "{appID: 12345, installationID: 678, privateKeyFile: /run/secrets/app.pem}",
		Description: "Use GitHub's API as an App installation (pull requests, and the commits of `commitVia: github-api`, which GitHub then signs), with installation tokens minted from the key. Git itself authenticates with the other credentials."},
	{Path: "git.credentials.githubApp.appID", Type: "number", Example: "12345", Description: "The App's ID, from its settings. Required with `githubApp`."},
	{Path: "git.credentials.githubApp.installationID", Type: "number", Example: "678", Description: "The installation's ID, from its URL. Required with `githubApp`."},
	{Path: "git.credentials.githubApp.privateKeyFile", Type: "file", Example: "/run/secrets/app.pem", Description: "The App's PEM private key. Required with `githubApp`."},
	{Path: "git.signing", Type: "mapping", Description: "Sign every commit. See [Signed commits](../signed-commits.md)."},
	{Path: "git.signing.keyFile", Type: "file", Example: "/run/secrets/signing-key",
		Description: "SSH (Ed25519, ECDSA, RSA) or OpenPGP private key; the format is told from the key. Required with `signing`."},
	{Path: "git.signing.passphraseFile", Type: "file", Example: "/run/secrets/signing-passphrase", Description: "The key's passphrase, only if it has one."},

	{Path: "registries[].host", Type: "host[:port]", Example: "registry.example.com", Description: "As in image names, without scheme or path. Required."},
	{Path: "registries[].insecure", Type: "boolean", Default: "false", Example: "true", Description: "Plain HTTP."},
	{Path: "registries[].rateLimit", Type: "number (requests per second)", Default: "100", Example: "20",
		Description: "Requests per second to this host, in bursts of the same size; negative for no limit. `429`/`503` answers are honoured either way. See [Performance](performance.md#registry-requests-what-a-pass-costs-and-the-default-rate-limit)."},

	{Path: "stages[].name", Type: "stage name", Example: "develop-frontend", Description: "The stage's name, as commands, the API and other stages' `upstream` name it. Required."},
	{Path: "stages[].image", Type: "image repository", Example: "registry.example.com/team/frontend", Description: "The image repository whose tags the stage promotes. Required."},
	{Path: "stages[].strategy", Type: "semver | lexical | newest | digest", Default: "semver", Example: "semver",
		Description: "How the next tag is chosen: the highest `[v]MAJOR.MINOR.PATCH` tag matching the constraint, the tag that sorts last as a string, the tag built last (image config), or one mutable tag followed by digest."},
	{Path: "stages[].constraint", Type: "string", Example: `"^1.2"`, Description: "For `semver`, a SemVer constraint; for `digest`, the tag to follow (default `latest`)."},
	{Path: "stages[].allowTags", Type: "Go regular expression", Example: `'^1\.'`, Description: "Only tags matching it are candidates."},
	{Path: "stages[].ignoreTags", Type: "Go regular expression", Example: `"-rc"`, Description: "Tags matching it are never candidates."},
	{Path: "stages[].platform", Type: "os/arch[/variant]", Default: "linux/amd64", Example: "linux/arm64", Description: "Which image of a multi-platform index `newest` reads the build time from."},
	{Path: "stages[].file", Type: "path in the repository", Default: "instance.yaml", Example: "develop/frontend/instance.yaml",
		Description: "The file the tag is written into. A path outside the repository, or two stages writing the same file and key, is refused."},
	{Path: "stages[].key", Type: "dotted YAML key", Default: "spec.values.deployment.tag", Example: "spec.values.deployment.tag", Description: "The key whose scalar value is replaced; comments and formatting stay."},
	{Path: "stages[].autoPromote", Type: "boolean", Default: "true", Example: "false", Description: "`false` makes every promotion wait for `promoter approve`."},
	{Path: "stages[].upstream", Type: "stage name", Example: "develop-frontend",
		Description: "Take only freight this stage has verified (after `soak`). An upstream that does not exist, or a cycle, is refused."},
	{Path: "stages[].soak", Type: "duration", Example: "10m", Description: "How long ago the upstream must have verified a freight."},
	{Path: "stages[].verify", Type: "mapping", Example: "{command: [./scripts/smoke-test.sh, staging], timeout: 2m}",
		Description: "A command whose success marks a pushed promotion verified."},
	{Path: "stages[].verify.command", Type: "list of strings, or a string run by `sh -c`", Example: "[./scripts/smoke-test.sh, staging]",
		Description: "Runs with `KROPIPE_STAGE`, `KROPIPE_IMAGE`, `KROPIPE_TAG`, `KROPIPE_DIGEST` and `KROPIPE_COMMIT` set; exit 0 verifies."},
	{Path: "stages[].verify.timeout", Type: "duration", Default: "5m", Example: "2m", Description: "Bounds the command."},
	{Path: "stages[].interval", Type: "duration", Example: "1m", Description: "This stage's poll period; may shorten the promoter's."},
	{Path: "stages[].write", Type: "push | pull-request", Default: "push", Example: "pull-request",
		Description: "Push the commit, or propose it in a pull request. See [Pull requests](../pull-requests.md)."},
	{Path: "stages[].pullRequest", Type: "mapping", Description: "With `write: pull-request` (the forge fields also with `commitVia: github-api`); every field optional."},
	{Path: "stages[].pullRequest.branch", Type: "text/template", Default: "kropipe/{{.Stage}}", Example: `"kropipe/{{.Stage}}"`,
		Description: "The head branch (sees `.Stage`, `.Branch`); never the target branch."},
	{Path: "stages[].pullRequest.merge", Type: "manual | auto", Default: "manual", Example: "auto",
		Description: "A human merges, or kropipe merges once mergeable with its checks passed."},
	{Path: "stages[].pullRequest.method", Type: "merge | squash | rebase", Default: "merge", Example: "squash", Description: "How auto merges merge."},
	{Path: "stages[].pullRequest.labels", Type: "list of strings", Example: "[promotion]", Description: "Labels set on each pull request opened."},
	{Path: "stages[].pullRequest.reviewers", Type: "list of strings", Example: "[alice, org/sre]", Description: "Reviewers asked; `org/team` for a GitHub team."},
	{Path: "stages[].pullRequest.forge", Type: "github | gitlab | gitea | forgejo | bitbucket", Default: "from `git.url`", Example: "gitea",
		Description: "The forge, for hosts not named after it."},
	{Path: "stages[].pullRequest.forgeAPIURL", Type: "URL", Default: "derived from `git.url`", Example: "https://git.example.com/api/v1",
		Description: "The forge's API base URL, when it is not where it usually is."},
	{Path: "stages[].commitVia", Type: "git | github-api", Default: "git", Example: "github-api",
		Description: "Who makes the commits: kropipe, or GitHub through its API (*Verified* with a GitHub App). See [Signed commits](../signed-commits.md)."},
	{Path: "stages[].signature", Type: "list of policy names or policies", Example: "[release]",
		Description: "Every policy must hold for the image's digest: names from `signaturePolicies`, or policies written in place (named `<stage>/signature[<i>]` unless they have a `name`)."},
	{Path: "stages[].signature[].name", Type: "string", Default: "`<stage>/signature[<i>]`", Example: "offline",
		Description: "The name of a policy written in place, for messages and trailers; it takes the fields of a policy besides."},

	{Path: "groups[].name", Type: "group name", Example: "develop/shop", Description: "The group's name; the group is a stage of its own for the commands. Required."},
	{Path: "groups[].members", Type: "list of stage names", Example: "[develop-frontend, develop-backend]", Description: "The stages that move together, in the order commits list them. Required."},
	{Path: "groups[].requireAll", Type: "boolean", Default: "false", Example: "true",
		Description: "Wait until every member has a new candidate (by default the others keep their value)."},
	{Path: "groups[].subject", Type: "text/template", Default: "`Promote shop: <changes>` (`Roll back …` for a rollback)", Example: `"Release {{.Name}}: {{.Changes}}"`,
		Description: "The commit subject; sees `.Name`, `.Group`, `.Kind`, `.Changes`, `.Members`."},

	{Path: policyPath + ".cosign", Type: "mapping", Example: "{key: cosign.pub}",
		Description: "A cosign signature: with a public `key`, or keyless with an `identity` and `issuer`. A key together with a keyless identity is refused."},
	{Path: policyPath + ".notation", Type: "mapping", Example: `{trustStore: ca.pem, trustedIdentities: ["*"]}`, Description: "A Notation signature."},
	{Path: policyPath + ".provenance", Type: "mapping", Example: "{sourceRepository: https://github.com/org/frontend}",
		Description: "With `cosign`: an in-toto SLSA provenance attestation, signed as `cosign` says, whose builder and/or source match. Needs a builder or a source."},
	{Path: policyPath + ".cosign.key", Type: "file (`secret:<name>/<key>` in a `--signature-policies` file)", Example: "/etc/kropipe/cosign.pub",
		Description: "PEM public key (ECDSA, Ed25519, RSA), as `cosign verify --key`."},
	{Path: policyPath + ".cosign.identity", Type: "string", Example: "https://github.com/org/frontend/.github/workflows/release.yml@refs/tags/v1",
		Description: "Keyless: the certificate's identity, as `--certificate-identity`; needs an issuer."},
	{Path: policyPath + ".cosign.identityRegexp", Type: "Go regular expression", Example: `'^https://github\.com/org/frontend/\.github/workflows/release\.yml@refs/tags/'`,
		Description: "Keyless: as `--certificate-identity-regexp`."},
	{Path: policyPath + ".cosign.issuer", Type: "URL", Example: "https://token.actions.githubusercontent.com", Description: "Keyless: the OIDC issuer, as `--certificate-oidc-issuer`."},
	{Path: policyPath + ".cosign.issuerRegexp", Type: "Go regular expression", Example: `'^https://token\.actions\.githubusercontent\.com$'`, Description: "Keyless: as `--certificate-oidc-issuer-regexp`."},
	{Path: policyPath + ".cosign.trustedRoot", Type: "file (`secret:<name>/<key>` in a `--signature-policies` file)", Default: "the public-good Sigstore root (TUF, `--sigstore-tuf-url`)", Example: "/etc/kropipe/trusted_root.json",
		Description: "Keyless: a private `trusted_root.json` (`cosign trusted-root create`)."},
	{Path: policyPath + ".cosign.ignoreTlog", Type: "boolean", Default: "false", Example: "true", Description: "Keyless: do not require a transparency-log entry."},
	{Path: policyPath + ".cosign.ignoreTimestamps", Type: "boolean", Default: "false", Example: "true", Description: "Keyless: do not require a signed timestamp."},
	{Path: policyPath + ".cosign.requireTlog", Type: "boolean", Default: "false", Example: "true", Description: "With a key: require a transparency-log entry."},
	{Path: policyPath + ".notation.trustStore", Type: "file (`secret:<name>/<key>` in a `--signature-policies` file)", Example: "/etc/kropipe/notation-ca.pem",
		Description: "PEM CA certificates the signatures must chain to."},
	{Path: policyPath + ".notation.trustedIdentities", Type: "list of strings", Example: `["x509.subject: C=US, O=Example, CN=release"]`,
		Description: "The signing certificates' subjects, or `\"*\"`."},
	{Path: policyPath + ".provenance.builderID", Type: "string", Example: "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v2.1.0",
		Description: "The provenance's builder id, matched exactly (or as a regular expression with `builderIDRegexp`)."},
	{Path: policyPath + ".provenance.builderIDRegexp", Type: "boolean", Default: "false", Example: "true", Description: "`builderID` is a Go regular expression."},
	{Path: policyPath + ".provenance.sourceRepository", Type: "string", Example: "https://github.com/org/frontend",
		Description: "The repository the provenance says the image was built from, matched exactly (or as a regular expression with `sourceRepositoryRegexp`)."},
	{Path: policyPath + ".provenance.sourceRepositoryRegexp", Type: "boolean", Default: "false", Example: "true", Description: "`sourceRepository` is a Go regular expression."},
}

// fieldNames are the names of parent's fields, in the table's order ("" for the top level).
func fieldNames(parent string) []string {
	var out []string
	for _, f := range Fields {
		rest, ok := f.Path, parent == ""
		if !ok {
			rest, ok = strings.CutPrefix(f.Path, parent+".")
		}
		if ok && !strings.ContainsAny(rest, ".[]<") {
			out = append(out, rest)
		}
	}
	return out
}
