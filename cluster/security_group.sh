#!/usr/bin/env bash
# Create the security group that cluster/config.yaml names (provider.security_group.GroupName),
# before the first `ray up`: SSH only from this machine's public address, and all traffic only
# between the cluster's own nodes. Ray's launcher uses an existing group with rules as it is;
# without this script it creates the group itself with SSH open to 0.0.0.0/0.
#
#   bash cluster/security_group.sh [REGION]      # default: provider.region of cluster/config.yaml
#   MY_IP=203.0.113.7 bash cluster/security_group.sh   # another address than the one this machine shows
#
# Needs the AWS CLI with credentials allowed to create security groups. Safe to re-run: an
# existing group is left as it is (edit its rules in the EC2 console, e.g. when your address changes).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
region="${1:-$(awk '/^ *region:/ {print $2; exit}' "$here/config.yaml")}"
name="$(awk '/GroupName:/ {print $2; exit}' "$here/config.yaml")"
my_ip="${MY_IP:-$(curl -fsS https://checkip.amazonaws.com)}"
vpc="$(aws ec2 describe-vpcs --region "$region" --filters Name=isDefault,Values=true --query 'Vpcs[0].VpcId' --output text)"
existing="$(aws ec2 describe-security-groups --region "$region" \
  --filters "Name=group-name,Values=$name" "Name=vpc-id,Values=$vpc" --query 'SecurityGroups[0].GroupId' --output text)"
if [ "$existing" != "None" ]; then
  echo "security group $name exists in $region ($existing); left as it is"
  exit 0
fi
sg="$(aws ec2 create-security-group --region "$region" --vpc-id "$vpc" --group-name "$name" \
  --description "harl_rllib Ray cluster: SSH from one address, all traffic between its nodes" \
  --query GroupId --output text)"
aws ec2 authorize-security-group-ingress --region "$region" --group-id "$sg" --ip-permissions \
  "IpProtocol=tcp,FromPort=22,ToPort=22,IpRanges=[{CidrIp=${my_ip}/32,Description=ssh-from-you}]" \
  "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$sg,Description=between-cluster-nodes}]" > /dev/null
echo "created security group $name ($sg) in $region: SSH from ${my_ip}/32, all traffic between its members"
