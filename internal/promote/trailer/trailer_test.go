package trailer

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

// messages are commit messages whose trailers Parse must read exactly as Git does.
var messages = map[string]string{
	"kropipe's own": "Promote image from 1.2.1 to 1.2.2\n\nStage develop-frontend promotes registry.example.com/team/frontend:1.2.2: spec.values.deployment.tag in develop/frontend/instance.yaml is set to \"1.2.2\".\n\n" +
		"Kropipe-Stage: develop-frontend\nKropipe-Image: registry.example.com/team/frontend:1.2.2\nKropipe-Value: 1.2.2\nKropipe-Previous: 1.2.1\nKropipe-Freight: f-1.2.2\n",
	"subject only":                         "Kropipe-Stage: develop-frontend\n",
	"subject and a trailer-like body line": "Fix things\n\nKropipe-Rejected: 1.2.2\nbecause it broke\n",
	"trailers not in the last paragraph":   "Fix things\n\nKropipe-Stage: develop-frontend\nKropipe-Rejected: 1.2.2\n\nA closing remark.\n",
	"prose with a colon":                   "Fix things\n\nNote: the rollout was slow.\n",
	"prose line among trailers":            "Fix things\n\nKropipe-Stage: develop-frontend\nsee the ticket\nKropipe-Rejected: 1.2.2\n",
	"continuation lines":                   "Fix things\n\nKropipe-Stage: develop-frontend\nReviewed-by: A. Person\n  and another\nKropipe-Value: 1.2.2\n",
	"signed-off quarter rule":              "Fix things\n\nsome words here\nmore words\nKropipe-Rejected: 1.2.2\nSigned-off-by: A <a@example.com>\n",
	"without a signed-off line":            "Fix things\n\nsome words here\nmore words\nKropipe-Rejected: 1.2.2\nAcked-by: A <a@example.com>\n",
	"comment lines":                        "Fix things\n\nKropipe-Stage: develop-frontend\n# a comment\nKropipe-Value: 1.2.2\n# trailing comment\n",
	"patch divider":                        "Fix things\n\nKropipe-Stage: develop-frontend\n---\nKropipe-Rejected: 1.2.2\n",
	"space before the colon":               "Fix things\n\nKropipe-Stage : develop-frontend\nKropipe-Value:1.2.2\n",
	"key with a space is no key":           "Fix things\n\nKropipe Stage: develop-frontend\n",
	"duplicates":                           "Roll back\n\nKropipe-Stage: develop-frontend\nKropipe-Rejected: 1.2.2\nKropipe-Rejected: 1.2.3\n",
	"trailing blank lines":                 "Fix things\n\nKropipe-Stage: develop-frontend\n\n\n",
	"empty value":                          "Fix things\n\nKropipe-Previous:\nKropipe-Stage: x\n",
	"no body":                              "",
	"signed by two policies":               "Promote image from 1.2.1 to 1.2.2\n\nStage develop-frontend promotes x.\n\nKropipe-Stage: develop-frontend\nKropipe-Value: 1.2.2\nKropipe-Previous: 1.2.1\nKropipe-Signed-By: https://github.com/org/repo/.github/workflows/release.yml@refs/tags/v1.2.2 (issuer https://token.actions.githubusercontent.com)\nKropipe-Signed-By: key SHA256:3q2+7w\nKropipe-Provenance: builder=https://github.com/actions/runner source=https://github.com/org/repo digest=sha256:ab\nKropipe-Freight: f-1.2.2\n",
}

func TestParse_MatchesGitInterpretTrailers(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatal("git is needed: it is the reference these messages are checked against")
	}
	for name, msg := range messages {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("git", "interpret-trailers", "--parse")
			cmd.Stdin = strings.NewReader(msg)
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("git interpret-trailers --parse: %v", err)
			}
			want := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
			if string(out) == "" {
				want = nil
			}
			var got []string
			for _, tr := range Parse(msg) {
				got = append(got, tr.Key+": "+tr.Value)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Parse = %q\ngit   = %q", got, want)
			}
		})
	}
}

func TestMap_RefusesAKropipeKeyGivenTwice(t *testing.T) {
	if _, err := Map(messages["duplicates"]); err == nil || !strings.Contains(err.Error(), "Kropipe-Rejected appears twice") {
		t.Fatalf("Map = %v, want the duplicate named", err)
	}
	m, err := Map("Fix\n\nCo-authored-by: A <a@example.com>\nCo-authored-by: B <b@example.com>\n")
	if err != nil || m["Co-authored-by"] != "B <b@example.com>" {
		t.Fatalf("Map of a repeated non-kropipe key = %v, %v; want the last kept", m, err)
	}
	m, err = Map(messages["kropipe's own"])
	if err != nil || m[Stage] != "develop-frontend" || m[Previous] != "1.2.1" {
		t.Fatalf("Map = %v, %v", m, err)
	}
}

// One Kropipe-Signed-By (and Kropipe-Provenance) per signature policy: Map does not refuse
// them, Parse gives them all in order.
func TestMap_AcceptsOneSignerPerPolicy(t *testing.T) {
	msg := messages["signed by two policies"]
	m, err := Map(msg)
	if err != nil || m[Stage] != "develop-frontend" {
		t.Fatalf("Map = %v, %v", m, err)
	}
	var signers []string
	for _, tr := range Parse(msg) {
		if tr.Key == SignedBy {
			signers = append(signers, tr.Value)
		}
	}
	if len(signers) != 2 || signers[1] != "key SHA256:3q2+7w" {
		t.Fatalf("signers %q", signers)
	}
}
