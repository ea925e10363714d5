// Command etcd is the etcd server at the version pinned in go.mod, built from the module proxy so
// the e2e stack needs no prebuilt download.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
