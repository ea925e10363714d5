package warehouse_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/kropipe/kropipe/internal/promote/warehouse"
)

// A stage polls its image: Discover says which tag to promote, and Resolve
// guards a tag given by hand (promoter promote STAGE TAG) before it is written.
func Example() {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, _ := random.Image(64, 1)
	for _, tag := range []string{"1.2.1", "1.2.2", "1.3.0-rc.1", "2.0.0"} {
		ref, _ := name.ParseReference(host + "/team/frontend:" + tag)
		_ = remote.Write(ref, img)
	}

	w, err := warehouse.New(
		warehouse.WithKeychain(authn.NewMultiKeychain()), // anonymous; see KeychainFromPullSecrets
		warehouse.WithRegistry(host, warehouse.RegistryConfig{Insecure: true, RateLimit: 20}),
		warehouse.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))),
	)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	image := host + "/team/frontend"

	f, _, err := w.Discover(ctx, image, warehouse.Selection{Strategy: "semver", Constraint: "^1.2"})
	fmt.Println(f.Tag, f.Value("semver"), err)

	_, rep, err := w.Discover(ctx, image, warehouse.Selection{Constraint: "^3"})
	fmt.Println(errors.Is(err, warehouse.ErrNoMatch), rep.Candidates, rep.Highest)

	_, err = w.Resolve(ctx, image, "1.9.9")
	fmt.Println(errors.Is(err, warehouse.ErrTagNotFound))
	// Output:
	// 1.2.2 1.2.2 <nil>
	// true 0 2.0.0
	// true
}
