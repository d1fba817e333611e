"""Resource store: resources, versions, search indexes and the global write counter.

Revision ID: 0001
Revises: 
Create Date: 2026-11-23 09:05:41.440844
"""

from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('idx_date',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('h_param', sa.BigInteger(), nullable=False),
    sa.Column('lo', sa.BigInteger(), nullable=False),
    sa.Column('hi', sa.BigInteger(), nullable=False)
    )
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.create_index('ix_date_hi', ['h_param', 'hi'], unique=False)
        batch_op.create_index('ix_date_lo', ['h_param', 'lo'], unique=False)
        batch_op.create_index('ix_date_res', ['rtype', 'rid'], unique=False)

    op.create_table('idx_reference',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('h_param', sa.BigInteger(), nullable=False),
    sa.Column('target_type', sa.String(length=64), nullable=True),
    sa.Column('target_id', sa.String(length=64), nullable=True),
    sa.Column('target_url', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.create_index('ix_reference_res', ['rtype', 'rid', 'h_param'], unique=False)
        batch_op.create_index('ix_reference_target', ['target_id', 'target_type', 'h_param'], unique=False)

    op.create_table('idx_string',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('h_param', sa.BigInteger(), nullable=False),
    sa.Column('value_norm', sa.Text(), nullable=False),
    sa.Column('value_exact', sa.Text(), nullable=False)
    )
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.create_index('ix_string_norm', ['h_param', 'value_norm'], unique=False, postgresql_ops={'value_norm': 'text_pattern_ops'})
        batch_op.create_index('ix_string_res', ['rtype', 'rid'], unique=False)

    op.create_table('idx_token',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('h_param', sa.BigInteger(), nullable=False),
    sa.Column('h_value', sa.BigInteger(), nullable=False),
    sa.Column('h_sys_value', sa.BigInteger(), nullable=False),
    sa.Column('h_sys', sa.BigInteger(), nullable=False),
    sa.Column('system', sa.Text(), nullable=True),
    sa.Column('code', sa.Text(), nullable=True)
    )
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.create_index('ix_token_param_code', ['h_param', 'code'], unique=False, postgresql_ops={'code': 'text_pattern_ops'})
        batch_op.create_index('ix_token_res', ['rtype', 'rid'], unique=False)
        batch_op.create_index('ix_token_sys', ['h_sys'], unique=False)
        batch_op.create_index('ix_token_sys_value', ['h_sys_value'], unique=False)
        batch_op.create_index('ix_token_value', ['h_value'], unique=False)

    op.create_table('resource_history',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=False),
    sa.Column('lu', sa.BigInteger(), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('rtype', 'rid', 'version')
    )
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.create_index('ix_history_txid', ['txid'], unique=False)
        batch_op.create_index('ix_history_type_txid', ['rtype', 'txid'], unique=False)

    op.create_table('resources',
    sa.Column('rtype', sa.String(length=64), nullable=False),
    sa.Column('rid', sa.String(length=64), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('txid', sa.BigInteger(), nullable=False),
    sa.Column('lu', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=True),
    sa.PrimaryKeyConstraint('rtype', 'rid')
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index('ix_resources_txid', ['txid'], unique=False)
        batch_op.create_index('ix_resources_type_lu', ['rtype', 'lu', 'rid'], unique=False)

    op.create_table('write_counter',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )

    op.bulk_insert(
        sa.table('write_counter', sa.column('id', sa.Integer), sa.column('value', sa.BigInteger)),
        [{'id': 1, 'value': 0}],
    )


def downgrade() -> None:
    op.drop_table('write_counter')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index('ix_resources_type_lu')
        batch_op.drop_index('ix_resources_txid')

    op.drop_table('resources')
    with op.batch_alter_table('resource_history', schema=None) as batch_op:
        batch_op.drop_index('ix_history_type_txid')
        batch_op.drop_index('ix_history_txid')

    op.drop_table('resource_history')
    with op.batch_alter_table('idx_token', schema=None) as batch_op:
        batch_op.drop_index('ix_token_value')
        batch_op.drop_index('ix_token_sys_value')
        batch_op.drop_index('ix_token_sys')
        batch_op.drop_index('ix_token_res')
        batch_op.drop_index('ix_token_param_code', postgresql_ops={'code': 'text_pattern_ops'})

    op.drop_table('idx_token')
    with op.batch_alter_table('idx_string', schema=None) as batch_op:
        batch_op.drop_index('ix_string_res')
        batch_op.drop_index('ix_string_norm', postgresql_ops={'value_norm': 'text_pattern_ops'})

    op.drop_table('idx_string')
    with op.batch_alter_table('idx_reference', schema=None) as batch_op:
        batch_op.drop_index('ix_reference_target')
        batch_op.drop_index('ix_reference_res')

    op.drop_table('idx_reference')
    with op.batch_alter_table('idx_date', schema=None) as batch_op:
        batch_op.drop_index('ix_date_res')
        batch_op.drop_index('ix_date_lo')
        batch_op.drop_index('ix_date_hi')

    op.drop_table('idx_date')
