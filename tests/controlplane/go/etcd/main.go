// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 (see versions.env).
// `go install go.etcd.io/etcd/server/v3@...` does not work because etcd's go.mod files use
// relative replace directives, so this wrapper module requires the published modules instead.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
