"""high assurance: client profiles (FAPI 2.0), PAR, DPoP and resource indicators

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile', sa.String(length=16), nullable=False, server_default='standard'))
        batch_op.add_column(sa.Column('require_par', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('dpop_bound', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('request_object_signing_alg', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=False, server_default='[]'))

    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dpop_jkt', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('resources', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('grants', schema=None) as batch_op:
        batch_op.drop_column('resources')
        batch_op.drop_column('dpop_jkt')

    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_column('resources')
        batch_op.drop_column('request_object_signing_alg')
        batch_op.drop_column('dpop_bound')
        batch_op.drop_column('require_par')
        batch_op.drop_column('profile')
