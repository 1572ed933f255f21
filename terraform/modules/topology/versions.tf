# Provider-free: everything here is computed from the variables, so `terraform test` runs it
# without a cloud account or a network.
terraform {
  required_version = ">= 1.6.0"
}
