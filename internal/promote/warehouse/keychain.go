package warehouse

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	k8sauthn "github.com/google/go-containerregistry/pkg/authn/kubernetes"
	"github.com/google/go-containerregistry/pkg/name"
	corev1 "k8s.io/api/core/v1"
)

// KeychainFromDockerConfig returns a keychain reading the Docker config file at
// path (a config.json, or a directory holding one, as DOCKER_CONFIG names). The
// file is read on each lookup, but a Warehouse looks credentials up once per
// repository and keeps the session: to use rotated credentials, create a new
// Warehouse.
func KeychainFromDockerConfig(path string) (authn.Keychain, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, config.ConfigFileName)
	}
	kc := &dockerConfigKeychain{path: path}
	if _, err := kc.load(); err != nil {
		return nil, err
	}
	return kc, nil
}

type dockerConfigKeychain struct{ path string }

func (k *dockerConfigKeychain) load() (*configfile.ConfigFile, error) {
	f, err := os.Open(k.path)
	if err != nil {
		return nil, fmt.Errorf("docker config %s: %w: point the registry credentials at an existing config.json", k.path, err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		// The parse error does not quote the file, so no secret leaks through it.
		return nil, fmt.Errorf("docker config %s is not a valid Docker config file: %v", k.path, err)
	}
	cf.Filename = k.path
	return cf, nil
}

// Resolve looks the repository up first, then its registry, as the Docker CLI does.
func (k *dockerConfigKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	cf, err := k.load()
	if err != nil {
		return nil, err
	}
	var empty types.AuthConfig
	for _, key := range []string{target.String(), target.RegistryStr()} {
		if key == name.DefaultRegistry {
			key = authn.DefaultAuthKey
		}
		cfg, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("docker config %s: credentials for %s: %v", k.path, key, err)
		}
		cfg.ServerAddress = ""
		if cfg != empty {
			return authn.FromConfig(authn.AuthConfig{
				Username:      cfg.Username,
				Password:      cfg.Password,
				Auth:          cfg.Auth,
				IdentityToken: cfg.IdentityToken,
				RegistryToken: cfg.RegistryToken,
			}), nil
		}
	}
	return authn.Anonymous, nil
}

// KeychainFromPullSecrets returns a keychain built from Kubernetes image pull
// secrets (type kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg), matched
// to registries the way the kubelet matches them.
func KeychainFromPullSecrets(ctx context.Context, secrets []corev1.Secret) (authn.Keychain, error) {
	for _, s := range secrets {
		// Parse one at a time only to name the bad secret; the library's error
		// never quotes the secret's content.
		if _, err := k8sauthn.NewFromPullSecrets(ctx, []corev1.Secret{s}); err != nil {
			return nil, fmt.Errorf("pull secret %s/%s: %v: its data must be a Docker config JSON (type %s)", s.Namespace, s.Name, err, corev1.SecretTypeDockerConfigJson)
		}
	}
	return k8sauthn.NewFromPullSecrets(ctx, secrets)
}
