# docker buildx bake -f deploy/docker/docker-bake.hcl   (from the repository root)
# The four service images from deploy/docker/Dockerfile (one matrix target); TAG=1.2.3 and REGISTRY=ghcr.io/acme/
# name published images REGISTRY + "streamrec/<service>:" + TAG.
variable "TAG" {
  default = "dev"
}

variable "REGISTRY" {
  default = ""
}

group "default" {
  targets = ["service"]
}

# One target per service (a bake matrix): `docker buildx bake ingest` builds one of them.
target "service" {
  name = svc.name
  matrix = {
    svc = [
      { name = "ingest", port = "8000" },
      { name = "recommender", port = "8001" },
      { name = "trainer", port = "8002" },
      { name = "stream-processor", port = "8003" },
    ]
  }
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  target     = "runtime"
  args       = { SERVICE = svc.name, PORT = svc.port }
  tags       = ["${REGISTRY}streamrec/${svc.name}:${TAG}"]
}
