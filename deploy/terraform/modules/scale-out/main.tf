# Scale-out: a private network joining the primary server and N app nodes, and a Hetzner load
# balancer in front of them. The balancer passes TCP 80 and 443 through with the PROXY
# protocol, so TLS still ends in nginx on each node and nginx learns the client address
# (set NGINX_LISTEN_OPTS=" proxy_protocol", NGINX_REAL_IP_HEADER=proxy_protocol and
# NGINX_TRUSTED_PROXIES to the network range on every node). docs/DEPLOY.md, "Scale out",
# says what runs where and how certificates are shared.

terraform {
  required_providers {
    hcloud = {
      source = "hetznercloud/hcloud"
    }
  }
}

locals {
  subnet_cidr = cidrsubnet(var.network_cidr, 8, 1)
}

resource "hcloud_network" "private" {
  name     = "${var.prefix}-net"
  ip_range = var.network_cidr
  labels   = var.labels
}

resource "hcloud_network_subnet" "app" {
  network_id   = hcloud_network.private.id
  type         = "cloud"
  network_zone = var.network_zone
  ip_range     = local.subnet_cidr
}

resource "hcloud_server_network" "primary" {
  server_id = var.primary_server_id
  subnet_id = hcloud_network_subnet.app.id
  ip        = cidrhost(local.subnet_cidr, 10)
}

resource "hcloud_server" "node" {
  count = var.node_count

  name               = "${var.prefix}-${count.index + 2}"
  server_type        = var.server_type
  image              = var.image
  location           = var.location
  ssh_keys           = var.ssh_key_ids
  firewall_ids       = var.firewall_ids
  placement_group_id = var.placement_group_id
  backups            = false
  delete_protection  = var.protection
  rebuild_protection = var.protection
  labels             = merge(var.labels, { role = "app" })
  user_data          = var.node_user_data

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  lifecycle {
    ignore_changes = [user_data, image, ssh_keys]
  }
}

resource "hcloud_server_network" "node" {
  count = var.node_count

  server_id = hcloud_server.node[count.index].id
  subnet_id = hcloud_network_subnet.app.id
  ip        = cidrhost(local.subnet_cidr, 11 + count.index)
}

resource "hcloud_load_balancer" "app" {
  name               = "${var.prefix}-lb"
  load_balancer_type = var.load_balancer_type
  location           = var.location
  delete_protection  = var.protection
  labels             = var.labels
}

resource "hcloud_load_balancer_network" "app" {
  load_balancer_id = hcloud_load_balancer.app.id
  subnet_id        = hcloud_network_subnet.app.id
  ip               = cidrhost(local.subnet_cidr, 2)
}

resource "hcloud_load_balancer_target" "primary" {
  type             = "server"
  load_balancer_id = hcloud_load_balancer.app.id
  server_id        = var.primary_server_id
  use_private_ip   = true

  depends_on = [hcloud_load_balancer_network.app, hcloud_server_network.primary]
}

resource "hcloud_load_balancer_target" "node" {
  count = var.node_count

  type             = "server"
  load_balancer_id = hcloud_load_balancer.app.id
  server_id        = hcloud_server.node[count.index].id
  use_private_ip   = true

  depends_on = [hcloud_load_balancer_network.app, hcloud_server_network.node]
}

resource "hcloud_load_balancer_service" "https" {
  load_balancer_id = hcloud_load_balancer.app.id
  protocol         = "tcp"
  listen_port      = 443
  destination_port = 443
  proxyprotocol    = true

  health_check {
    protocol = "tcp"
    port     = 443
    interval = 10
    timeout  = 5
    retries  = 3
  }
}

resource "hcloud_load_balancer_service" "http" {
  load_balancer_id = hcloud_load_balancer.app.id
  protocol         = "tcp"
  listen_port      = 80
  destination_port = 80
  proxyprotocol    = true

  health_check {
    protocol = "tcp"
    port     = 80
    interval = 10
    timeout  = 5
    retries  = 3
  }
}
