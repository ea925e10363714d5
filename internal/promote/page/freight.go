package page

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/kropipe/kropipe/internal/promote/api"
	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// freightView is a freight's journey: the stages of its image, in pipeline order, each with
// what happened to the freight there.
type freightView struct {
	Common
	ID       string
	Image    string // the image's repository
	Value    string // its tag (or digest)
	Stages   []journey
	Problems []string // histories that could not be read
}

// journey is what happened to a freight in one stage, oldest first.
type journey struct {
	Name    string
	Runs    bool   // the stage runs it now
	Current string // what the stage runs now
	Waiting string // why it waits there, when it is the stage's candidate
	Events  []journeyEvent
}

type journeyEvent struct {
	Time      time.Time
	What      string // promoted, verified, soaked, approved, rolled back, …
	Detail    string
	Commit    string // short
	CommitURL string
	Future    bool // Time is to come (a soak's end)
}

// stepOrder orders a freight's steps in one stage that fall in the same second.
var stepOrder = map[string]int{"approved": 0, "promoted": 1, "verified": 2, "soaked": 3, "rolled back": 4, "rolled back to it": 4}

var freightID = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// freight serves /freight/{id}: the journey of the freight with that id (a Kropipe-Freight
// trailer, a candidate's or a verification's id).
func (p *Page) freight(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cm := p.common(w, r)
	if cm.Standby != "" {
		p.render(w, r, http.StatusServiceUnavailable, "index", indexView{Common: cm})
		return
	}
	if !freightID.MatchString(id) {
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("%q is not a freight id (hex digits, as in a commit's Kropipe-Freight trailer)", id))
		return
	}
	sts := p.c.Status()
	image, value, ok := p.identify(r.Context(), id, sts)
	if !ok {
		p.fail(w, r, http.StatusNotFound, fmt.Errorf("no stage knows freight %s: no candidate, verification or commit names it", id))
		return
	}
	p.render(w, r, http.StatusOK, "freight", p.journeys(r.Context(), cm, id, image, value, sts))
}

// findFreight serves /freight/find?image=…&value=…: a value the page knows no id for (a
// stage's current value) leads to its freight page when a commit names its id, else to the
// journey of that image and value.
func (p *Page) findFreight(w http.ResponseWriter, r *http.Request) {
	cm := p.common(w, r)
	if cm.Standby != "" {
		p.render(w, r, http.StatusServiceUnavailable, "index", indexView{Common: cm})
		return
	}
	image, value := r.URL.Query().Get("image"), r.URL.Query().Get("value")
	if image == "" || !validValue.MatchString(value) {
		p.fail(w, r, http.StatusBadRequest, fmt.Errorf("name an image and a tag or digest: /freight/find?image=registry.example.com/team/frontend&value=1.2.2"))
		return
	}
	sts := p.c.Status()
	for _, st := range sts {
		if st.Image != image || len(st.Members) > 0 {
			continue
		}
		recs, err := p.c.History(r.Context(), st.Name)
		if err != nil {
			continue
		}
		for _, rec := range recs {
			if rec.Freight != "" && rec.Value == value && repository(rec.Image) == image && freightID.MatchString(rec.Freight) && rec.Group == "" {
				http.Redirect(w, r, freightPath(rec.Freight), http.StatusSeeOther)
				return
			}
		}
	}
	p.render(w, r, http.StatusOK, "freight", p.journeys(r.Context(), cm, "", image, value, sts))
}

// identify finds the image and value of freight id: in the stages' statuses, else in
// their histories.
func (p *Page) identify(ctx context.Context, id string, sts []stage.Status) (image, value string, ok bool) {
	specs := map[string]stage.Spec{}
	for _, s := range p.specs() {
		specs[s.Name] = s
	}
	for _, st := range sts {
		switch {
		case st.Candidate != nil && st.Candidate.ID() == id:
			return st.Candidate.Image, st.Candidate.Value(specs[st.Name].Strategy), true
		case st.VerifiedFreight != nil && st.VerifiedFreight.FreightID == id:
			return cmp.Or(st.VerifiedFreight.Freight.Image, st.Image), st.VerifiedFreight.Value, true
		case st.Verification != nil && st.Verification.Freight == id && st.Image != "":
			return st.Image, st.Verification.Value, true
		}
	}
	for _, st := range sts {
		if len(st.Members) > 0 {
			continue
		}
		recs, err := p.c.History(ctx, st.Name)
		if err != nil {
			continue
		}
		for _, rec := range recs {
			if rec.Freight == id && rec.Group == "" {
				return repository(rec.Image), rec.Value, true
			}
		}
	}
	return "", "", false
}

// repository is the repository of an image reference as a commit writes it
// (registry:5000/team/frontend:1.2.2@sha256:…).
func repository(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// journeys follows the freight (image, value; id when known) through every stage of its
// image, in the pipeline's order.
func (p *Page) journeys(ctx context.Context, cm Common, id, image, value string, sts []stage.Status) freightView {
	v := freightView{Common: cm, ID: id, Image: image, Value: value}
	specs := map[string]stage.Spec{}
	for _, s := range p.specs() {
		specs[s.Name] = s
	}
	verifiedAt := map[string]time.Time{} // stage → when it verified the freight
	// A controller that remembers verifications and approvals (api.Attester) lets the page
	// say when a version was verified and approved in each stage, not only where last.
	att, _ := p.c.(api.Attester)
	now := p.clock.Now()
	for _, st := range sts {
		if st.Image != image || len(st.Members) > 0 {
			continue
		}
		j := journey{Name: st.Name, Current: st.CurrentTag, Runs: st.CurrentTag == value}
		spec := specs[st.Name]
		if st.Candidate != nil && st.Candidate.Value(spec.Strategy) == value && !j.Runs {
			j.Waiting = fmt.Sprintf("%s: %s", st.Decision, gitwrite.Redact(st.Reason))
		}
		recs, err := p.c.History(ctx, st.Name)
		if err != nil {
			v.Problems = append(v.Problems, gitwrite.Redact(err.Error()))
		}
		ours := func(rec gitwrite.Record) bool {
			return (id != "" && rec.Freight == id) || (repository(rec.Image) == image && rec.Value == value)
		}
		for _, rec := range slices.Backward(recs) {
			ev := journeyEvent{Time: rec.Time, Commit: short(rec.Commit), CommitURL: commitURL(spec.RepoURL, rec.Commit)}
			switch {
			case rec.Kept:
				continue
			case rec.Kind == gitwrite.Rollback && rec.Value == value:
				ev.What, ev.Detail = "rolled back to it", fmt.Sprintf("from %s", orNothing(rec.Previous))
			case rec.Kind == gitwrite.Rollback && (rec.Previous == value || rec.Rejected == value):
				ev.What, ev.Detail = "rolled back", fmt.Sprintf("to %s; never promoted here automatically again", rec.Value)
			case rec.Kind == gitwrite.Promote && ours(rec):
				ev.What, ev.Detail = "promoted", fmt.Sprintf("from %s", orNothing(rec.Previous))
			default:
				continue
			}
			if rec.Group != "" {
				ev.Detail += " with release group " + rec.Group
			}
			ev.Detail += ": " + rec.Subject
			if rec.RequestedBy != "" {
				ev.Detail += ", requested by " + rec.RequestedBy
			}
			j.Events = append(j.Events, ev)
		}
		var verifs []stage.Verification
		var approvals []stage.Approval
		if att != nil {
			if a, err := att.Attestations(ctx, st.Name); err == nil {
				verifs, approvals = a.Verifications, a.Approvals
			}
			if st.Group != "" {
				if a, err := att.Attestations(ctx, st.Group); err == nil {
					approvals = append(approvals, a.Approvals...)
				}
			}
		}
		if len(verifs) == 0 && st.VerifiedFreight != nil {
			verifs = []stage.Verification{*st.VerifiedFreight}
		}
		for _, ver := range verifs {
			if ver.Value == value && (ver.FreightID == id || cmp.Or(ver.Freight.Image, st.Image) == image) {
				verifiedAt[st.Name] = ver.VerifiedAt
				j.Events = append(j.Events, journeyEvent{Time: ver.VerifiedAt, What: "verified", Commit: short(ver.Commit), CommitURL: commitURL(spec.RepoURL, ver.Commit)})
			}
		}
		for _, a := range approvals {
			if a.Value == value || strings.Contains(a.Value, "="+value) {
				ev := journeyEvent{Time: a.ApprovedAt, What: "approved"}
				if a.RequestedBy != "" {
					ev.Detail = "by " + a.RequestedBy
				}
				j.Events = append(j.Events, ev)
			}
		}
		if r := st.Verification; r != nil && r.Value == value && r.Phase != "Passed" {
			j.Events = append(j.Events, journeyEvent{Time: r.Started, What: "verification " + strings.ToLower(r.Phase), Detail: gitwrite.Redact(r.Message), Commit: short(r.Commit), CommitURL: commitURL(spec.RepoURL, r.Commit)})
		}
		if at, ok := verifiedAt[spec.Upstream]; ok && spec.Soak > 0 {
			end := at.Add(spec.Soak)
			promoted := slices.IndexFunc(j.Events, func(e journeyEvent) bool { return e.What == "promoted" })
			switch {
			case promoted >= 0 && j.Events[promoted].Time.Before(end):
				// Promoted by hand before the soak ended: there was no soak to speak of.
			case end.After(now):
				j.Events = append(j.Events, journeyEvent{Time: end, What: "soaking", Detail: fmt.Sprintf("%s after %s verified it; ends", spec.Soak, spec.Upstream), Future: true})
			default:
				j.Events = append(j.Events, journeyEvent{Time: end, What: "soaked", Detail: fmt.Sprintf("%s after %s verified it", spec.Soak, spec.Upstream)})
			}
		}
		// Commits keep whole seconds: within one, the steps come in the order they happen.
		slices.SortStableFunc(j.Events, func(a, b journeyEvent) int {
			return cmp.Or(a.Time.Truncate(time.Second).Compare(b.Time.Truncate(time.Second)), cmp.Compare(stepOrder[a.What], stepOrder[b.What]))
		})
		v.Stages = append(v.Stages, j)
	}
	return v
}

// freightLink is the freight page of a history row's value.
func freightLink(rec gitwrite.Record) string {
	if rec.Group != "" && len(rec.Members) > 0 {
		return "" // a set: its members' rows link theirs
	}
	if freightID.MatchString(rec.Freight) && rec.Kind == gitwrite.Promote {
		return freightPath(rec.Freight)
	}
	if rec.Image == "" || rec.Value == "" {
		return ""
	}
	return "/freight/find?" + url.Values{"image": {repository(rec.Image)}, "value": {rec.Value}}.Encode()
}
