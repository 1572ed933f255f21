# The join secret: origins put a fresh join document (token, CA hash, seeds) into it every
# hour; every other instance reads it when it first starts. Terraform creates the secret but
# never a value, so the state holds its ARN only.
resource "aws_secretsmanager_secret" "join" {
  name_prefix             = "${var.name}-join-"
  description             = "Skein join document (short-lived join token, CA hash, seeds), written by the origins"
  recovery_window_in_days = 0
  # checkov:skip=CKV_AWS_149: the value is a join token that expires within hours and is rewritten hourly; the AWS-managed key is enough.
  # checkov:skip=CKV2_AWS_57: the origins rotate it themselves (skein-token-refresh), not through a rotation Lambda.
}

data "aws_iam_policy_document" "assume_ec2" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "origin" {
  statement {
    sid       = "JoinDocument"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"]
    resources = [aws_secretsmanager_secret.join.arn]
  }
}

data "aws_iam_policy_document" "edge" {
  statement {
    sid       = "JoinDocument"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [aws_secretsmanager_secret.join.arn]
  }
  statement {
    sid       = "DrainOnScaleIn"
    actions   = ["autoscaling:CompleteLifecycleAction"]
    resources = ["arn:aws:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/${var.name}-*-edges"]
  }
}

resource "aws_iam_role" "origin" {
  name_prefix        = "${var.name}-origin-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role" "edge" {
  name_prefix        = "${var.name}-edge-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role" "dns" {
  name_prefix        = "${var.name}-dns-"
  assume_role_policy = data.aws_iam_policy_document.assume_ec2.json
}

resource "aws_iam_role_policy" "origin" {
  role   = aws_iam_role.origin.id
  policy = data.aws_iam_policy_document.origin.json
}

resource "aws_iam_role_policy" "edge" {
  role   = aws_iam_role.edge.id
  policy = data.aws_iam_policy_document.edge.json
}

# Operators reach instances through Session Manager, not SSH: no key pairs, no port 22.
resource "aws_iam_role_policy_attachment" "ssm" {
  for_each   = { origin = aws_iam_role.origin.name, edge = aws_iam_role.edge.name, dns = aws_iam_role.dns.name }
  role       = each.value
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "origin" {
  name_prefix = "${var.name}-origin-"
  role        = aws_iam_role.origin.name
}

resource "aws_iam_instance_profile" "edge" {
  name_prefix = "${var.name}-edge-"
  role        = aws_iam_role.edge.name
}

resource "aws_iam_instance_profile" "dns" {
  name_prefix = "${var.name}-dns-"
  role        = aws_iam_role.dns.name
}
