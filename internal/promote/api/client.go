package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kropipe/kropipe/internal/promote/stage"
	"github.com/kropipe/kropipe/internal/promote/stagefilter"
)

// Client calls a running promoter's API; the promoter command uses it with --addr.
type Client struct {
	base   string
	token  string
	http   *http.Client
	header http.Header
}

// NewClient returns a client for addr (host:port or a URL). token may be empty.
func NewClient(addr, token string, hc *http.Client) *Client {
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: hc, header: http.Header{}}
}

// ForwardedHeader marks a request one promoter replica passed on to the replica owning the
// stage: the receiver answers it itself and never passes it on again.
const ForwardedHeader = "X-Kropipe-Forwarded"

// Forwarding returns a copy of c whose requests carry ForwardedHeader.
func (c *Client) Forwarding() *Client {
	cp := *c
	cp.header = c.header.Clone()
	cp.header.Set(ForwardedHeader, "1")
	return &cp
}

// As returns a copy of c whose actions say name asked for them (RequestedByHeader): the
// server records it when it takes actions without a token, or from another replica;
// otherwise the name of the token c sends counts.
func (c *Client) As(name string) *Client {
	cp := *c
	cp.header = c.header.Clone()
	if name == "" {
		cp.header.Del(RequestedByHeader)
	} else {
		cp.header.Set(RequestedByHeader, name)
	}
	return &cp
}

// ShardPath is the root of the routes a sharded replica serves to the others: the stages of
// the shards it holds, and nothing else.
const ShardPath = "/api/v1/shard/stages"

// OwnStages returns the statuses of the stages the replica at c runs itself (ShardPath).
func (c *Client) OwnStages(ctx context.Context) ([]stage.Status, error) {
	var out StageList
	err := c.do(ctx, http.MethodGet, ShardPath, nil, &out)
	return out.Stages, err
}

// OwnStage returns the status of a stage the replica at c runs itself.
func (c *Client) OwnStage(ctx context.Context, name string) (stage.Status, error) {
	var out stage.Status
	err := c.do(ctx, http.MethodGet, ShardPath+"/"+url.PathEscape(name), nil, &out)
	return out, err
}

// Tags lists the tags the stage's warehouse sees.
func (c *Client) Tags(ctx context.Context, name string) (Tags, error) {
	var out Tags
	err := c.do(ctx, http.MethodGet, "/api/v1/stages/"+url.PathEscape(name)+"/tags", nil, &out)
	return out, err
}

// Stages returns every stage's status.
func (c *Client) Stages(ctx context.Context) ([]stage.Status, error) {
	var out StageList
	err := c.do(ctx, http.MethodGet, "/api/v1/stages", nil, &out)
	return out.Stages, err
}

// ListStages returns a page of the stages f keeps: at most limit (0: all) from token on
// ("" for the first page); the answer's Continue is the next page's token.
func (c *Client) ListStages(ctx context.Context, f stagefilter.Filter, limit int, token string) (StageList, error) {
	q := f.Values()
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	if token != "" {
		q.Set("continue", token)
	}
	path := "/api/v1/stages"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out StageList
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Stage returns one stage's status.
func (c *Client) Stage(ctx context.Context, name string) (stage.Status, error) {
	var out stage.Status
	err := c.do(ctx, http.MethodGet, "/api/v1/stages/"+url.PathEscape(name), nil, &out)
	return out, err
}

// History returns a stage's promotions and rollbacks, newest first.
func (c *Client) History(ctx context.Context, name string) (History, error) {
	var out History
	err := c.do(ctx, http.MethodGet, "/api/v1/stages/"+url.PathEscape(name)+"/history", nil, &out)
	return out, err
}

// Attestations returns what the promoter remembers of the stage's verifications and approvals.
func (c *Client) Attestations(ctx context.Context, name string) (stage.Attestations, error) {
	var out stage.Attestations
	err := c.do(ctx, http.MethodGet, "/api/v1/stages/"+url.PathEscape(name)+"/attestations", nil, &out)
	return out, err
}

// Promote promotes tag ("" for the candidate) to the stage, if it still runs expect (""
// expects nothing; see PromoteRequest.Expect).
func (c *Client) Promote(ctx context.Context, name, tag, expect string) (stage.Outcome, error) {
	var out stage.Outcome
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/promote", PromoteRequest{Tag: tag, Expect: expect}, &out)
	return out, err
}

// PromoteMember promotes tag to a member of a release group alone, if it still runs expect.
func (c *Client) PromoteMember(ctx context.Context, name, tag, expect string) (stage.Outcome, error) {
	var out stage.Outcome
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/promote", PromoteRequest{Tag: tag, Member: true, Expect: expect}, &out)
	return out, err
}

// RollbackMember rolls a member of a release group back alone, if it still runs expect.
func (c *Client) RollbackMember(ctx context.Context, name, to, expect string) (stage.Outcome, error) {
	var out stage.Outcome
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/rollback", RollbackRequest{To: to, Member: true, Expect: expect}, &out)
	return out, err
}

// Rollback rolls the stage back to its previous value, or to to, if it still runs expect:
// retried with the same expect, it never rolls back twice.
func (c *Client) Rollback(ctx context.Context, name, to, expect string) (stage.Outcome, error) {
	var out stage.Outcome
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/rollback", RollbackRequest{To: to, Expect: expect}, &out)
	return out, err
}

// Approve approves tag ("" for the candidate) for the stage, if it still runs expect, and
// returns the value approved.
func (c *Client) Approve(ctx context.Context, name, tag, expect string) (string, error) {
	var out Approved
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/approve", PromoteRequest{Tag: tag, Expect: expect}, &out)
	return out.Value, err
}

// Reverify runs the verification of the value the stage runs again; it returns that value.
func (c *Client) Reverify(ctx context.Context, name string) (string, error) {
	var out Reverified
	err := c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/verify", nil, &out)
	return out.Value, err
}

// Pause pauses (or with paused false, resumes) automatic promotions to the stage.
func (c *Client) Pause(ctx context.Context, name string, paused bool) error {
	verb := "resume"
	if paused {
		verb = "pause"
	}
	return c.do(ctx, http.MethodPost, "/api/v1/stages/"+url.PathEscape(name)+"/"+verb, nil, &Paused{})
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reaching the promoter at %s: %w (is it running? for a cluster: kubectl -n argocd port-forward deploy/kropipe-promoter 8080)", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &StatusError{Code: resp.StatusCode, Msg: e.Error}
		}
		return &StatusError{Code: resp.StatusCode, Msg: fmt.Sprintf("%s %s: %s", method, path, resp.Status)}
	}
	return json.Unmarshal(data, out)
}
