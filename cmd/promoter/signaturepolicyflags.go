package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kropipe/kropipe/internal/promote/config"
	"github.com/kropipe/kropipe/internal/promote/signature"
)

// signaturePoliciesHelp is --signature-policies' help.
const signaturePoliciesHelp = "file of the image signature policies kropipe.io/verify-signature names: the same YAML as promoter.yaml's signaturePolicies (name: {cosign|notation|provenance}); key, trustedRoot and trustStore are files or secret:<name>/<key> of a Secret in --namespace, read again every minute. The file is read at start (a policy that does not parse stops the promoter); a file that does not exist is no policies (manifests/promoter mounts the optional ConfigMap kropipe-signature-policies)"

// loadSignaturePolicies reads --signature-policies; none when it is not given or the file (an
// optional ConfigMap's) does not exist.
func loadSignaturePolicies(file string) (map[string]signature.Policy, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--signature-policies: %w", err)
	}
	pols, err := config.ParseSignaturePolicies(data, file)
	if err != nil {
		return nil, fmt.Errorf("--signature-policies: %w", err)
	}
	return pols, nil
}
