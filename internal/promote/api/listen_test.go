package api

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIsLoopback_OnlyThisMachinesAddressesCountAsPrivate(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "127.0.0.2:1": true,
		"0.0.0.0:8080": false, ":8080": false, "10.0.0.7:8080": false, "promoter.example:8080": false,
	} {
		got, err := IsLoopback(addr)
		if err != nil || got != want {
			t.Errorf("IsLoopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := IsLoopback("8080"); err == nil || !strings.Contains(err.Error(), "--addr") {
		t.Errorf("an address without a host names --addr in its error, got %v", err)
	}
}

func TestReadToken_FileWinsAndAnEmptyFileIsRefused(t *testing.T) {
	env := func(k string) string {
		if k == "KROPIPE_TOKEN" {
			return " from-env\n"
		}
		return ""
	}
	if tok, err := ReadToken("", env); err != nil || tok != "from-env" {
		t.Errorf("from the environment: %q, %v", tok, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := ReadToken(file, env); err != nil || tok != "from-file" {
		t.Errorf("from --token-file: %q, %v", tok, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(empty, env); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("an empty token file must be refused, not mean no token: %v", err)
	}
}
