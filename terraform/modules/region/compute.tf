# Origins: fixed instances with fixed private addresses (they are the cluster's seeds).
# Edges: an autoscaling group behind the region's load balancer, drained on scale-in.

data "aws_ami" "debian" {
  count       = var.ami_id == "" ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian's official cloud images
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

locals {
  ami_id = var.ami_id != "" ? var.ami_id : data.aws_ami.debian[0].id
}

resource "aws_instance" "origin" {
  for_each               = { for o in var.origins : o.name => o }
  ami                    = local.ami_id
  instance_type          = var.instance_types.origin
  subnet_id              = aws_subnet.public[0].id
  private_ip             = each.value.private_ip
  vpc_security_group_ids = [aws_security_group.node.id]
  iam_instance_profile   = var.instance_profile.origin
  user_data              = each.value.user_data
  # A changed user-data means a new release or configuration: replace the origin (one at a
  # time: see docs/deploy.md, rolling upgrades).
  user_data_replace_on_change = true
  ebs_optimized               = true
  monitoring                  = true
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    encrypted   = true
    volume_size = 20
  }
  tags = { Name = "${var.name}-${each.key}", "skein:role" = "origin", "skein:region" = var.region_name }
  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_launch_template" "edge" {
  name_prefix            = "${var.name}-${var.region_name}-edge-"
  image_id               = local.ami_id
  instance_type          = var.instance_types.edge
  vpc_security_group_ids = [aws_security_group.node.id]
  user_data              = base64encode(var.edge_user_data)
  ebs_optimized          = true
  iam_instance_profile {
    name = var.instance_profile.edge
  }
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
    # skein-lifecycle reads the target lifecycle state from the instance metadata.
    instance_metadata_tags = "disabled"
  }
  monitoring {
    enabled = true
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      encrypted   = true
      volume_size = 20
    }
  }
  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "${var.name}-${var.region_name}-edge", "skein:role" = "edge", "skein:region" = var.region_name }
  }
}

resource "aws_autoscaling_group" "edge" {
  name                = var.topology.edge_asg
  min_size            = var.topology.edges.min
  desired_capacity    = var.topology.edges.desired
  max_size            = var.topology.edges.max
  vpc_zone_identifier = aws_subnet.public[*].id
  target_group_arns   = [for tg in aws_lb_target_group.edge : tg.arn]
  health_check_type   = "ELB"
  # Boot (release download, join) takes a minute; do not judge an edge before.
  health_check_grace_period = 180
  launch_template {
    id      = aws_launch_template.edge.id
    version = aws_launch_template.edge.latest_version
  }
  # A new launch template version (release, configuration) replaces edges a few at a time;
  # each old edge drains through the lifecycle hook first.
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 75
      instance_warmup        = 120
    }
  }
  # Scale-in waits here until skein-lifecycle has made the node leave the cluster.
  initial_lifecycle_hook {
    name                 = var.lifecycle_hook_name
    lifecycle_transition = "autoscaling:EC2_INSTANCE_TERMINATING"
    default_result       = "CONTINUE"
    heartbeat_timeout    = 300
  }
  tag {
    key                 = "skein:region"
    value               = var.region_name
    propagate_at_launch = true
  }
}
