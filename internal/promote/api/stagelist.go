package api

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// StageList is the body of GET /api/v1/stages: the stages the filter keeps (all without
// one), a page of them with limit.
type StageList struct {
	Stages []stage.Status `json:"stages"`
	// Total is how many stages the filter keeps, on every page.
	Total int `json:"total"`
	// Continue, when set, is the token of the next page: send it back as ?continue= with
	// the same filter and limit.
	Continue string `json:"continue,omitempty"`
	// Attention counts every stage (filtered or not) in each state that needs a human:
	// failed, waiting-approval, inconclusive, paused, held.
	Attention map[stagefilter.State]int `json:"attention"`
}

// maxLimit bounds one page; a list without limit has every stage.
const maxLimit = 1000

// ListStages is GET /api/v1/stages over sts: the stages f keeps, from the one after
// token's, at most limit (0: all), with the attention counts over sts.
func ListStages(sts []stage.Status, f stagefilter.Filter, limit int, token string) (StageList, error) {
	out := StageList{Stages: []stage.Status{}, Attention: map[stagefilter.State]int{}}
	for _, s := range stagefilter.States {
		out.Attention[s] = 0
	}
	// The indexes of the stages kept, not copies: a Status is large and a page is small.
	var kept []int
	for i := range sts {
		st := &sts[i]
		for _, s := range stagefilter.StatesOf(*st) {
			if _, ok := out.Attention[s]; ok {
				out.Attention[s]++
			}
		}
		if f.Match(*st) {
			kept = append(kept, i)
		}
	}
	out.Total = len(kept)
	start, err := resume(sts, kept, token)
	if err != nil {
		return StageList{}, err
	}
	end := len(kept)
	if limit > 0 && start+limit < end {
		end = start + limit
		out.Continue = continueToken(end, sts[kept[end-1]].Name)
	}
	for _, i := range kept[start:end] {
		out.Stages = append(out.Stages, sts[i])
	}
	return out, nil
}

// A continue token is the offset of the next page and the name of the last stage given,
// so a list that changed between pages resumes after that stage wherever it moved.
func continueToken(next int, last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(next) + "/" + last))
}

func resume(sts []stage.Status, kept []int, token string) (int, error) {
	if token == "" {
		return 0, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	off, last, ok := strings.Cut(string(b), "/")
	n, nerr := strconv.Atoi(off)
	if err != nil || !ok || nerr != nil || n < 0 {
		return 0, errors.New("query parameter continue is not a token this API gave; start again without it")
	}
	if n <= len(kept) && n > 0 && sts[kept[n-1]].Name == last {
		return n, nil
	}
	for k, i := range kept {
		if sts[i].Name == last {
			return k + 1, nil
		}
	}
	return min(n, len(kept)), nil // the last stage given is gone: resume at its offset
}

func (s *Server) stages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := stagefilter.Parse(q)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	limit := 0
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > maxLimit {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query parameter limit=%s: give a number of stages from 1 to %d", v, maxLimit))
			return
		}
	}
	list, err := ListStages(s.c.Status(), f, limit, q.Get("continue"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
