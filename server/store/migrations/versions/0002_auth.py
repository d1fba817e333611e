"""SMART authorization server (clients, users, keys, codes, refresh tokens, jti, launches) and audit trail.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:34:17.700862
"""

from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('audit_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('recorded_us', sa.BigInteger(), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=True),
    sa.Column('username', sa.String(length=128), nullable=True),
    sa.Column('fhir_user', sa.String(length=200), nullable=True),
    sa.Column('patient', sa.String(length=64), nullable=True),
    sa.Column('action', sa.String(length=1), nullable=False),
    sa.Column('interaction', sa.String(length=32), nullable=False),
    sa.Column('rtype', sa.String(length=64), nullable=True),
    sa.Column('rid', sa.String(length=64), nullable=True),
    sa.Column('query', sa.Text(), nullable=True),
    sa.Column('entities', sa.Text(), nullable=True),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('remote_addr', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_recorded', ['recorded_us'], unique=False)

    op.create_table('auth_clients',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('jwks', sa.Text(), nullable=True),
    sa.Column('jwks_url', sa.Text(), nullable=True),
    sa.Column('redirect_uris', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('source_kind', sa.String(length=16), nullable=False),
    sa.Column('source_uri', sa.Text(), nullable=False),
    sa.Column('origin', sa.String(length=8), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id')
    )
    op.create_table('auth_codes',
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('redirect_uri', sa.Text(), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('code_challenge', sa.String(length=64), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code_hash')
    )
    with op.batch_alter_table('auth_codes', schema=None) as batch_op:
        batch_op.create_index('ix_auth_codes_expires', ['expires_us'], unique=False)

    op.create_table('auth_jti',
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('jti', sa.String(length=256), nullable=False),
    sa.Column('keep_until_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('client_id', 'jti')
    )
    with op.batch_alter_table('auth_jti', schema=None) as batch_op:
        batch_op.create_index('ix_auth_jti_keep_until', ['keep_until_us'], unique=False)

    op.create_table('auth_launches',
    sa.Column('launch_hash', sa.String(length=64), nullable=False),
    sa.Column('ehr_client_id', sa.String(length=128), nullable=False),
    sa.Column('app_client_id', sa.String(length=128), nullable=True),
    sa.Column('patient', sa.String(length=64), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('launch_hash')
    )
    with op.batch_alter_table('auth_launches', schema=None) as batch_op:
        batch_op.create_index('ix_auth_launches_expires', ['expires_us'], unique=False)

    op.create_table('auth_refresh_tokens',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('family', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('scope', sa.Text(), nullable=False),
    sa.Column('context', sa.Text(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.Column('used', sa.Boolean(), nullable=False),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('token_hash')
    )
    with op.batch_alter_table('auth_refresh_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_auth_refresh_expires', ['expires_us'], unique=False)
        batch_op.create_index('ix_auth_refresh_family', ['family'], unique=False)

    op.create_table('auth_requests',
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.String(length=128), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('expires_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('request_hash')
    )
    with op.batch_alter_table('auth_requests', schema=None) as batch_op:
        batch_op.create_index('ix_auth_requests_expires', ['expires_us'], unique=False)

    op.create_table('auth_server_keys',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('private_jwks', sa.Text(), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('auth_users',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('password_hash', sa.Text(), nullable=False),
    sa.Column('fhir_user', sa.String(length=200), nullable=True),
    sa.Column('patients', sa.Text(), nullable=False),
    sa.Column('updated_us', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('username')
    )


def downgrade() -> None:
    op.drop_table('auth_users')
    op.drop_table('auth_server_keys')
    with op.batch_alter_table('auth_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_requests_expires')

    op.drop_table('auth_requests')
    with op.batch_alter_table('auth_refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_refresh_family')
        batch_op.drop_index('ix_auth_refresh_expires')

    op.drop_table('auth_refresh_tokens')
    with op.batch_alter_table('auth_launches', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_launches_expires')

    op.drop_table('auth_launches')
    with op.batch_alter_table('auth_jti', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_jti_keep_until')

    op.drop_table('auth_jti')
    with op.batch_alter_table('auth_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_auth_codes_expires')

    op.drop_table('auth_codes')
    op.drop_table('auth_clients')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_recorded')

    op.drop_table('audit_events')
