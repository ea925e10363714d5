package argocd

import (
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// groupMember is one opted-in Application's kropipe.io/group* annotations.
type groupMember struct {
	stage, app          string
	requireAll, subject string
	hasRequire, hasSubj bool
	// write holds the member's write mode and pull-request settings with their
	// defaults, keyed by annotation: a group opens one pull request, so they must agree.
	write map[string]string
}

// writeAgreement are the annotations a release group's members must agree on: the set is
// one commit, pushed or proposed in one pull request from one branch on one forge, of images
// verified under the same signature policies.
var writeAgreement = []string{AnnWrite, AnnMerge, AnnMergeMethod, AnnPullRequestBranch, AnnForge, AnnForgeAPIURL, AnnCommitVia, AnnVerifySignature}

// writeSettings are a member's effective write settings, keyed by annotation.
func writeSettings(ann, own map[string]string) map[string]string {
	w, via, pr := writeMode(ann, own)
	s := stage.Spec{Write: w, CommitVia: via, PullRequest: pr}.WithDefaults()
	if s.CommitVia == "" {
		s.CommitVia = stage.CommitViaGit
	}
	return map[string]string{
		AnnWrite: s.Write, AnnMerge: s.PullRequest.Merge, AnnMergeMethod: s.PullRequest.Method,
		AnnPullRequestBranch: s.PullRequest.Branch, AnnForge: strings.ToLower(s.PullRequest.Forge), AnnForgeAPIURL: s.PullRequest.ForgeAPIURL,
		AnnCommitVia: s.CommitVia, AnnVerifySignature: signatureSetting(ann),
	}
}

// groups reads the release groups from kropipe.io/group: the stages sharing a group name, in
// the Applications' order. What a group needs its members to agree on (require-all, subject)
// and a member that cannot run become the group's Problem, so the engine holds that group
// alone; each disagreeing Application also gets a warning naming the annotation.
func groups(sorted []*unstructured.Unstructured, sets map[string]*unstructured.Unstructured, specs []stage.Spec, problems []Problem) ([]stage.GroupSpec, []Problem) {
	runnable := map[string]bool{}
	for _, s := range specs {
		runnable[s.Name] = true
	}
	broken := map[string]string{}
	for _, p := range problems {
		if _, ok := broken[p.Stage]; !ok {
			broken[p.Stage] = p.Error()
		}
	}
	byGroup := map[string][]groupMember{}
	var names []string
	var warnings []Problem
	for _, app := range sorted {
		ann, own := annotations(app, sets)
		if strings.TrimSpace(ann[AnnImage]) == "" {
			continue
		}
		name := app.GetName()
		if v := strings.TrimSpace(ann[AnnStage]); v != "" {
			name = v
		}
		g := strings.TrimSpace(ann[AnnGroup])
		m := groupMember{stage: name, app: refOf(app).String()}
		m.requireAll, m.hasRequire = ann[AnnGroupRequireAll]
		m.subject, m.hasSubj = ann[AnnGroupSubject]
		m.write = writeSettings(ann, own)
		if g == "" {
			for _, k := range []string{AnnGroupRequireAll, AnnGroupSubject} {
				if _, ok := ann[k]; ok {
					warnings = append(warnings, Problem{Stage: name, App: m.app, Field: k, Message: fmt.Sprintf("is set but %s is not; it only applies to a release group's members", AnnGroup)})
				}
			}
			continue
		}
		if _, ok := byGroup[g]; !ok {
			names = append(names, g)
		}
		byGroup[g] = append(byGroup[g], m)
	}
	sort.Strings(names)
	var out []stage.GroupSpec
	for _, g := range names {
		members := byGroup[g]
		gs := stage.GroupSpec{Name: g}
		var problems []string
		disagree := func(field string, value func(groupMember) string) string {
			first := value(members[0])
			for _, m := range members[1:] {
				if v := value(m); v != first {
					msg := fmt.Sprintf("members disagree on %s: %q on %s (stage %s), %q on %s (stage %s); give every member the same, or set it on their ApplicationSet", field, first, members[0].app, members[0].stage, v, m.app, m.stage)
					warnings = append(warnings, Problem{Stage: m.stage, App: m.app, Field: field, Message: msg})
					problems = append(problems, msg)
					break
				}
			}
			return first
		}
		req := disagree(AnnGroupRequireAll, func(m groupMember) string { return strings.TrimSpace(m.requireAll) })
		if req != "" {
			b, err := parseBool(req)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", AnnGroupRequireAll, err))
			}
			gs.RequireAll = b
		}
		gs.Subject = disagree(AnnGroupSubject, func(m groupMember) string { return m.subject })
		for _, k := range writeAgreement {
			disagree(k, func(m groupMember) string { return m.write[k] })
		}
		for _, m := range members {
			gs.Members = append(gs.Members, m.stage)
			if !runnable[m.stage] {
				why := broken[m.stage]
				if why == "" {
					why = "it is left out"
				}
				problems = append(problems, fmt.Sprintf("member %s cannot run, so neither can the set: %s", m.stage, why))
			}
		}
		gs.Problem = strings.Join(problems, "; ")
		out = append(out, gs)
	}
	return out, warnings
}
