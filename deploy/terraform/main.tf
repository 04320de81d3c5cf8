# Hetzner Cloud for Concierge, as planned in seed 001: an SSH key, a firewall (22 from an
# allow-list, 80, 443), a spread placement group, a 50 GB volume with delete protection, and
# one server with backups on, configured by cloud-init (Docker + Compose, UFW, Fail2Ban, the
# volume on /mnt/data). Optionally (scale_out = true) a private network, more app nodes and a
# load balancer: modules/scale-out.
#
#   export HCLOUD_TOKEN=...            # project token, read/write
#   cp terraform.tfvars.example terraform.tfvars && $EDITOR terraform.tfvars
#   terraform init && terraform plan -out plan.tfplan && terraform apply plan.tfplan
#
# `concierge infra inventory` / `concierge infra plan` show the same resources from the API.

locals {
  prefix = "${var.name}-${var.environment}"
  labels = merge(
    {
      app         = var.name
      environment = var.environment
      managed-by  = "terraform"
    },
    var.labels,
  )
}

resource "hcloud_ssh_key" "main" {
  name       = "${local.prefix}-key"
  public_key = var.ssh_public_key
  labels     = local.labels
}

resource "hcloud_firewall" "main" {
  name   = "${local.prefix}-firewall"
  labels = local.labels

  rule {
    description = "SSH from the allow-list only"
    direction   = "in"
    protocol    = "tcp"
    port        = "22"
    source_ips  = var.ssh_allowed_cidrs
  }

  rule {
    description = "HTTP (ACME challenges, redirect to HTTPS)"
    direction   = "in"
    protocol    = "tcp"
    port        = "80"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "HTTPS"
    direction   = "in"
    protocol    = "tcp"
    port        = "443"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  rule {
    description = "ICMP (path MTU discovery, ping)"
    direction   = "in"
    protocol    = "icmp"
    source_ips  = ["0.0.0.0/0", "::/0"]
  }

  # No outbound rule: Hetzner then allows all outbound traffic (Twilio, model providers,
  # Let's Encrypt, package mirrors).
}

resource "hcloud_placement_group" "spread" {
  name   = "${local.prefix}-pg"
  type   = "spread"
  labels = local.labels
}

resource "hcloud_volume" "data" {
  name              = "${local.prefix}-data"
  size              = var.volume_size
  location          = var.location
  format            = "ext4"
  delete_protection = true
  labels            = local.labels
}

resource "hcloud_server" "app" {
  name               = "${local.prefix}-1"
  server_type        = var.server_type
  image              = var.image
  location           = var.location
  ssh_keys           = [hcloud_ssh_key.main.id]
  firewall_ids       = [hcloud_firewall.main.id]
  placement_group_id = hcloud_placement_group.spread.id
  backups            = var.server_backups
  delete_protection  = var.protection
  rebuild_protection = var.protection
  labels             = merge(local.labels, { role = "primary" })

  public_net {
    ipv4_enabled = true
    ipv6_enabled = true
  }

  user_data = templatefile("${path.module}/cloud-init.yaml", {
    admin_user        = var.admin_user
    ssh_public_key    = var.ssh_public_key
    ssh_allowed_cidrs = var.ssh_allowed_cidrs
    volume_id         = hcloud_volume.data.id
    app_dir           = var.app_dir
  })

  lifecycle {
    # cloud-init runs once, at creation: a later edit of cloud-init.yaml must not replace a
    # running server. Apply such changes by hand, or taint the server on purpose.
    ignore_changes = [user_data, image, ssh_keys]
  }
}

resource "hcloud_volume_attachment" "data" {
  volume_id = hcloud_volume.data.id
  server_id = hcloud_server.app.id
  automount = false # cloud-init mounts it by id on /mnt/data (and fstab keeps it there)
}

module "scale_out" {
  source = "./modules/scale-out"
  count  = var.scale_out ? 1 : 0

  prefix             = local.prefix
  labels             = local.labels
  location           = var.location
  network_zone       = lookup(local.network_zones, var.location, "eu-central")
  network_cidr       = var.network_cidr
  primary_server_id  = hcloud_server.app.id
  node_count         = var.extra_app_nodes
  server_type        = var.app_node_server_type
  image              = var.image
  ssh_key_ids        = [hcloud_ssh_key.main.id]
  firewall_ids       = [hcloud_firewall.main.id]
  placement_group_id = hcloud_placement_group.spread.id
  load_balancer_type = var.load_balancer_type
  protection         = var.protection

  node_user_data = templatefile("${path.module}/cloud-init.yaml", {
    admin_user        = var.admin_user
    ssh_public_key    = var.ssh_public_key
    ssh_allowed_cidrs = var.ssh_allowed_cidrs
    volume_id         = ""
    app_dir           = var.app_dir
  })
}

locals {
  network_zones = {
    nbg1 = "eu-central"
    fsn1 = "eu-central"
    hel1 = "eu-central"
    ash  = "us-east"
    hil  = "us-west"
    sin  = "ap-southeast"
  }
}
