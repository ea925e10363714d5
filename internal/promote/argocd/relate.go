package argocd

import (
	"fmt"
	"sort"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/stage"
)

// relate checks how the stages relate — unique names, upstreams that exist and
// are runnable, no cycles, no two stages writing one key — and leaves out every
// stage that fails, with a Problem on it. prior are the problems already found,
// so a stage following a broken one is told why it waits.
func relate(cands []*candidate, prior []Problem) ([]*candidate, []Problem) {
	var problems []Problem
	blocked := map[string]bool{}
	for _, p := range prior {
		blocked[p.Stage] = true
	}
	drop := func(c *candidate, field, format string, args ...any) {
		problems = append(problems, Problem{Stage: c.spec.Name, App: c.app, Field: field, Message: fmt.Sprintf(format, args...)})
		blocked[c.spec.Name] = true
	}

	byName := map[string][]*candidate{}
	for _, c := range cands {
		byName[c.spec.Name] = append(byName[c.spec.Name], c)
	}
	var live []*candidate
	for _, c := range cands {
		if same := byName[c.spec.Name]; len(same) > 1 {
			var apps []string
			for _, o := range same {
				apps = append(apps, o.app)
			}
			drop(c, AnnStage, "%q is the stage of several Applications (%s); give each its own kropipe.io/stage", c.spec.Name, strings.Join(apps, ", "))
			continue
		}
		live = append(live, c)
	}
	all := map[string]bool{}
	for n := range byName {
		all[n] = true
	}
	for n := range blocked {
		all[n] = true
	}

	for range len(cands) + 2 {
		changed := false
		names := map[string]*candidate{}
		for _, c := range live {
			names[c.spec.Name] = c
		}
		var next []*candidate
		for _, c := range live {
			up := c.spec.Upstream
			switch {
			case up == "" || names[up] != nil:
				next = append(next, c)
			case blocked[up]:
				drop(c, AnnUpstream, "follows stage %q, which cannot run because of its own problem; fix that stage first", up)
				changed = true
			default:
				drop(c, AnnUpstream, "names %q, which is not a stage; use one of %s", up, list(all, c.spec.Name))
				changed = true
			}
		}
		live = next
		if cyc := cycles(live); len(cyc) > 0 {
			next = next[:0:0]
			for _, c := range live {
				if path, ok := cyc[c.spec.Name]; ok {
					drop(c, AnnUpstream, "stages follow each other in a cycle (%s); one of them must have no kropipe.io/upstream", path)
					continue
				}
				next = append(next, c)
			}
			live, changed = next, true
		}
		if changed {
			continue
		}
		specs := make([]stage.Spec, len(live))
		for i, c := range live {
			specs[i] = c.spec
		}
		err := stage.ValidateAll(specs)
		if err == nil {
			break
		}
		bad := map[string]*stage.FieldError{}
		for _, fe := range fieldErrors(err) {
			if _, ok := bad[fe.Stage]; !ok {
				bad[fe.Stage] = fe
			}
		}
		next = nil
		for _, c := range live {
			fe, ok := bad[c.spec.Name]
			if !ok {
				fe, ok = bad[""] // not tied to a stage: nothing can be trusted
			}
			if ok {
				drop(c, annotationOf(fe.Field), "%s", fe.Msg)
				continue
			}
			next = append(next, c)
		}
		live = next
	}
	return live, problems
}

// cycles maps every stage on an upstream cycle to the cycle, written a → b → a.
func cycles(cands []*candidate) map[string]string {
	up := map[string]string{}
	for _, c := range cands {
		up[c.spec.Name] = c.spec.Upstream
	}
	out := map[string]string{}
	for _, c := range cands {
		seen := map[string]bool{}
		chain := []string{}
		for cur := c.spec.Name; cur != "" && !seen[cur]; cur = up[cur] {
			seen[cur] = true
			chain = append(chain, cur)
			if up[cur] == c.spec.Name {
				out[c.spec.Name] = strings.Join(append(chain, c.spec.Name), " → ")
				break
			}
		}
	}
	return out
}

func list(names map[string]bool, except string) string {
	var out []string
	for n := range names {
		if n != except {
			out = append(out, fmt.Sprintf("%q", n))
		}
	}
	if len(out) == 0 {
		return "(none: this is the only stage)"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
