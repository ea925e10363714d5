package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Request is one `generate` call: the application folder and the environment Argo CD gave it.
type Request struct {
	// Dir is the absolute working directory of generate (the application's folder).
	Dir string `json:"dir"`
	// Env holds the NAME=value pairs that generate reads (see ForwardedEnv).
	Env []string `json:"env"`
}

// Answer is what generate would have printed and its exit code. It is sent whole, after the
// render finished, so a client never holds half of one.
type Answer struct {
	Code           int
	Stdout, Stderr []byte
}

// ErrIncomplete is returned by the client for an answer cut short or refused (the server died,
// or hung up on a request it does not serve):
// the caller renders in-process instead.
var ErrIncomplete = errors.New("render server answer is incomplete")

// magic starts every answer; a server of another protocol version is refused, not misread.
var magic = []byte("KROPIPE-RENDER/1\n")

// maxRequest bounds a request (a path and a few environment variables).
const maxRequest = 1 << 20

// maxAnswer bounds each stream of an answer; the engine's own file limits keep real answers far
// below it.
const maxAnswer = 256 << 20

func writeRequest(w io.Writer, r Request) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(body))))
	buf.Write(body)
	_, err = w.Write(buf.Bytes())
	return err
}

func readRequest(r io.Reader) (Request, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return Request{}, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > maxRequest {
		return Request{}, fmt.Errorf("request of %d bytes is over the %d-byte limit", size, maxRequest)
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		return Request{}, err
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return Request{}, fmt.Errorf("request: %w", err)
	}
	return req, nil
}

func writeAnswer(w io.Writer, a Answer) error {
	var buf bytes.Buffer
	buf.Grow(len(magic) + 20 + len(a.Stdout) + len(a.Stderr))
	buf.Write(magic)
	buf.Write(binary.BigEndian.AppendUint32(nil, uint32(int32(a.Code))))
	buf.Write(binary.BigEndian.AppendUint64(nil, uint64(len(a.Stdout))))
	buf.Write(binary.BigEndian.AppendUint64(nil, uint64(len(a.Stderr))))
	buf.Write(a.Stdout)
	buf.Write(a.Stderr)
	_, err := w.Write(buf.Bytes())
	return err
}

func readAnswer(r io.Reader) (Answer, error) {
	head := make([]byte, len(magic)+20)
	if _, err := io.ReadFull(r, head); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	if !bytes.Equal(head[:len(magic)], magic) {
		return Answer{}, fmt.Errorf("%w: not a %q answer", ErrIncomplete, bytes.TrimSpace(magic))
	}
	h := head[len(magic):]
	a := Answer{Code: int(int32(binary.BigEndian.Uint32(h[0:4])))}
	nOut, nErr := binary.BigEndian.Uint64(h[4:12]), binary.BigEndian.Uint64(h[12:20])
	if nOut > maxAnswer || nErr > maxAnswer {
		return Answer{}, fmt.Errorf("%w: %d+%d bytes announced, over the limit", ErrIncomplete, nOut, nErr)
	}
	body := make([]byte, nOut+nErr)
	if _, err := io.ReadFull(r, body); err != nil {
		return Answer{}, fmt.Errorf("%w: %w", ErrIncomplete, err)
	}
	a.Stdout, a.Stderr = body[:nOut], body[nOut:]
	return a, nil
}
